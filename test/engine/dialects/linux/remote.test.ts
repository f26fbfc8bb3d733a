/**
 * Linux remote coverage, KCOV_UNIQUE_ENABLE and KCOV_RESET_TRACE against the
 * engine directly. Each test cites the kernel/kcov.c function it mirrors.
 */
import t from 'tap';
import { Engine } from '../../../../src/engine/engine.js';
import type { Kernel as AnyKernel } from '../../../../src/engine/kernel.js';
import { KCOV_IRQ_AREA_SIZE, kcovMoveArea, linux, type LinuxDescriptor, type LinuxTypes } from '../../../../src/engine/dialects/linux/index.js';
import { Area } from '../../../../src/engine/area.js';
import { decodeJsonEvents } from '../../../../src/engine/events.js';
import { errnoOf, invariantsAfterEach, typedKernel } from '../../../helpers.js';

type Kernel = AnyKernel<LinuxTypes>;

const checked = invariantsAfterEach(t);

const USB1 = '0x0100000000000001';
const USB2 = '0x0100000000000002';
const COMMON = '0x000000000000002a';

function kernel(opts: { memoryLimit?: number; cpuAreaWords?: number } = {}): Kernel {
  const e = checked(new Engine({ dialect: 'linux', ncpus: 2, memoryLimit: opts.memoryLimit ?? 64 << 20, cpuAreaWords: opts.cpuAreaWords }));
  return typedKernel(e.kernel('default'), linux);
}


function desc(k: Kernel, fd: number): LinuxDescriptor {
  return k.descriptor(fd);
}

/** An fd with an area of `words`, not enabled. */
function initFd(k: Kernel, tid: number, words: number): number {
  const fd = k.open().fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', tid, words);
  return fd;
}

/** An fd remote-enabled by `tid`. */
function remoteFd(k: Kernel, tid: number, words: number, arg: Record<string, unknown>): number {
  const fd = initFd(k, tid, words);
  k.ioctl(fd, 'KCOV_REMOTE_ENABLE', tid, { trace_mode: 'pc', area_size: 64, ...arg });
  return fd;
}

/** PCs in the descriptor's area, as numbers (small test values). */
function pcsOf(k: Kernel, fd: number): number[] {
  const a = desc(k, fd).area!;
  const out: number[] = [];
  for (let i = 1; i <= Math.min(a.count, a.words - 1); i++) out.push(a.wordLo(i));
  return out;
}

function section(k: Kernel, handle: string, tid: number, pcs: number[]) {
  return k.remotes.oneShot(handle, { context: 'task', tid }, () => [
    { kind: 'pc', records: pcs.length, chunks: [new Uint8Array(pcBytes(pcs))] },
  ]);
}

function pcBytes(pcs: number[]): ArrayBuffer {
  const w = new Uint32Array(pcs.length * 2);
  pcs.forEach((p, i) => (w[i * 2] = p));
  return w.buffer;
}

t.test('kcov_ioctl KCOV_REMOTE_ENABLE: more than KCOV_REMOTE_MAX_HANDLES is EINVAL before any locked check', async (t) => {
  const k = kernel();
  const other = initFd(k, 1, 16);
  k.ioctl(other, 'KCOV_ENABLE', 1, 0); // thread 1 now has t->kcov: a locked check would say EBUSY
  const fd = initFd(k, 1, 16);
  const handles = Array.from({ length: 0x101 }, (_, i) => `0x01000000${(i + 1).toString(16).padStart(8, '0')}`);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 0, area_size: 8, handles })), 'EINVAL');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 0, area_size: 8, handles: handles.slice(0, 0x100) })), 'EBUSY',
    'exactly 0x100 handles passes the count check and reaches kcov->t/t->kcov');
  // remote_arg->num_handles != remote_num_handles (the array and its count disagree)
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { num_handles: 2, handles: [USB1] })), 'EINVAL');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, 7)), 'EFAULT', 'an argument that is not a struct is a bad pointer');
  t.equal(k.remotes.count, 0);
});

t.test('kcov_ioctl_locked KCOV_REMOTE_ENABLE: mode != INIT or no area is EINVAL, then EBUSY, then trace mode, then area_size', async (t) => {
  const k = kernel();
  const fresh = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(fresh, 'KCOV_REMOTE_ENABLE', 1, { handles: [USB1] })), 'EINVAL', 'no KCOV_INIT_TRACE: mode DISABLED');
  const enabled = initFd(k, 1, 16);
  k.ioctl(enabled, 'KCOV_ENABLE', 1, 0);
  t.equal(errnoOf(() => k.ioctl(enabled, 'KCOV_REMOTE_ENABLE', 1, { handles: [USB1] })), 'EINVAL', 'already enabled: mode TRACE_PC');
  const fd = initFd(k, 2, 16);
  // t->kcov != NULL wins over a bad trace mode (the mode is checked after EBUSY)
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 2, handles: [USB1] })), 'EBUSY');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { trace_mode: 2, handles: [USB1] })), 'EINVAL', 'kcov_get_mode: 2');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { trace_mode: 'pc', area_size: '0x1000000000000000', handles: [USB1] })), 'EINVAL',
    'area_size > LONG_MAX / sizeof(unsigned long)');
  t.equal(desc(k, fd).kmode, 'INIT', 'nothing changed');
  t.equal(k.remotes.count, 0);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { trace_mode: 'cmp', area_size: '0x0fffffffffffffff', handles: [USB1] })), null,
    'LONG_MAX / 8 itself is accepted');
  t.equal(desc(k, fd).kmode, 'TRACE_CMP');
});

t.test('KCOV_REMOTE_ENABLE on a descriptor bound elsewhere: kcov->t != NULL is EBUSY', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1] });
  // The descriptor is no longer INIT, so the mode check answers first (as in the kernel).
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB2] })), 'EINVAL');
  const fd2 = initFd(k, 1, 16);
  t.equal(errnoOf(() => k.ioctl(fd2, 'KCOV_REMOTE_ENABLE', 1, { handles: [USB2] })), 'EBUSY', 'the enabling thread already has t->kcov');
  t.equal(errnoOf(() => k.ioctl(fd2, 'KCOV_ENABLE', 1, 0)), 'EBUSY', 'and cannot KCOV_ENABLE another fd either');
});

t.test('kcov_check_handle on handles[] (USB only) and common_handle (COMMON, non-zero instance); failures roll back via kcov_disable', async (t) => {
  const k = kernel();
  const fd = initFd(k, 1, 16);
  const d = desc(k, fd);
  const cases: [Record<string, unknown>, string][] = [
    [{ handles: [USB1, COMMON] }, 'COMMON handle in handles[]'],
    [{ handles: ['0x0200000000000001'] }, 'unknown subsystem 2'],
    [{ handles: ['0x0100000100000001'] }, 'byte 4 set'],
    [{ handles: ['0x0100ff0000000001'] }, 'byte 6 set'],
    [{ handles: [USB1], common_handle: USB2 }, 'USB common_handle'],
    [{ handles: [USB1], common_handle: '0x0000000100000001' }, 'common_handle with byte 4 set'],
  ];
  let seq = d.sequence;
  for (const [arg, why] of cases) {
    t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 8, ...arg })), 'EINVAL', why);
    t.equal(k.remotes.count, 0, `${why}: handles registered before the bad one are removed (kcov_remote_reset)`);
    t.equal(d.kmode, 'INIT', `${why}: kcov_reset back to INIT`);
    t.equal(d.owner, null, `${why}: kcov->t = NULL`);
    t.equal(k.findThread(1).kcov, null, `${why}: kcov_task_reset`);
    t.equal(k.findThread(1).handle, null, `${why}: no common handle kept`);
    t.equal(d.sequence, seq + 1, `${why}: kcov->sequence++`);
    t.equal(d.remote, false);
    t.equal(d.refs, 1, `${why}: no reference taken`);
    seq = d.sequence;
  }
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 8, handles: ['0x0100000000000000'], common_handle: '0x0' })), null,
    'USB instance 0 is valid in handles[]; common_handle 0 means none');
  t.same(d.handles, ['0x100000000000000']);
  t.equal(d.commonHandle, null);
});

t.test('kcov_remote_add: a handle registered by any descriptor is EEXIST, rolled back', async (t) => {
  const k = kernel();
  remoteFd(k, 1, 16, { handles: [USB1], common_handle: COMMON });
  const fd = initFd(k, 2, 16);
  const d = desc(k, fd);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB2, USB1] })), 'EEXIST');
  t.notOk(k.state.remotes.has('0x100000000000002'), 'USB2, added before the clash, is removed again');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB2], common_handle: COMMON })), 'EEXIST', 'common handle taken');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB2, USB2] })), 'EEXIST', 'the same handle twice in one array');
  t.equal(d.kmode, 'INIT');
  t.equal(k.remotes.count, 2, 'only the first descriptor\'s handles');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB2] })), null, 'a free handle still works afterwards');
});

t.test('KCOV_REMOTE_ENABLE: t->kcov_mode = KCOV_MODE_REMOTE, the enabling task itself is not traced', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1], common_handle: COMMON });
  const th = k.findThread(1);
  t.equal(th.kcovMode, 'REMOTE');
  t.equal(th.kcov, desc(k, fd));
  t.same(th.handle, [0x2a, 0], 't->kcov_handle = common_handle');
  t.equal(desc(k, fd).refs, 2, 'kcov_get for the task');
  const r = k.eventsJson(1, { pcs: [1, 2, 3] });
  t.equal(r.ignored, 3);
  t.equal(desc(k, fd).area!.count, 0);
});

t.test('kcov_task_init: a child inherits the common handle only', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { common_handle: COMMON });
  const child = k.createThread(10, 1, 1).thread;
  t.same(child.handle, [0x2a, 0]);
  t.equal(child.kcov, null, 'no kcov of its own');
  const grandchild = k.createThread(11, 1, 10).thread;
  t.same(grandchild.handle, [0x2a, 0], 'passed on again');
  k.ensureThread(5); // created on the fly: no handle
  t.equal(k.createThread(12, 12, 5).created, true);
  t.equal(k.findThread(12).handle, null, 'a parent without a handle passes none');
  // The kernel code a child runs annotates with kcov_common_handle(): its section lands in fd.
  k.remotes.enterThreadSection(11, { handle: '0x2a' });
  k.eventsJson(11, { pcs: [7, 8] });
  k.remotes.leaveThreadSection(11);
  t.same(pcsOf(k, fd), [7, 8]);
});

t.test('kcov_move_area, PC: partial copy near the end, nothing once the count is past capacity', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 5, { handles: [USB1], area_size: 10 }); // capacity 4 PCs
  let r = section(k, USB1, 2, [1, 2, 3]);
  t.equal(r.moved, 3);
  t.equal(r.count, 3, 'count is the section area\'s count');
  r = section(k, USB1, 2, [4, 5, 6]);
  t.equal(r.moved, 1, 'min(dst_free, src_len << 3): one PC fits');
  t.same(pcsOf(k, fd), [1, 2, 3, 4]);
  r = section(k, USB1, 2, [7]);
  t.equal(r.moved, 0, 'full: dst_free is 0');
  t.equal(desc(k, fd).area!.count, 4);
  k.setCount(desc(k, fd), 5);
  r = section(k, USB1, 2, [9]);
  t.equal(r.moved, 0, 'dst_len > capacity: return before copying');
  t.equal(desc(k, fd).area!.count, 5, 'count left as userspace wrote it');
  k.setCount(desc(k, fd), 0);
  r = section(k, USB1, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  t.equal(r.accepted, 9, 'the section area holds area_size - 1 PCs');
  t.equal(r.dropped, 2);
  t.equal(r.moved, 4);
});

t.test('kcov_move_area, CMP: bytes, not records: a partial record lands past the count', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 6, { trace_mode: 1, handles: [USB1], area_size: 16 }); // 48 bytes: 1 record + 8 bytes
  const d = desc(k, fd);
  const cmp = (type: number, pc: number) => ({ type, arg1: 1, arg2: 2, pc });
  const run = (...recs: ReturnType<typeof cmp>[]) =>
    k.remotes.oneShot(USB1, { context: 'task', tid: 2 }, () => decode({ cmps: recs }));
  let r = run(cmp(0x11, 0x100), cmp(0x22, 0x200));
  t.equal(r.moved, 1, 'bytes_to_move = min(40, 64) = 40: one whole record');
  t.equal(d.area!.count, 1);
  t.equal(d.area!.wordLo(4), 0x100, 'record 0 pc');
  t.equal(d.area!.wordLo(5), 0x22, 'and the first 8 bytes of record 1 (its type) past the count');
  r = run(cmp(0x33, 0x300));
  t.equal(r.moved, 0, 'dst_len == capacity: 8 free bytes, no whole record');
  t.equal(d.area!.count, 1);
  t.equal(d.area!.wordLo(5), 0x33, 'those 8 bytes are still copied');
  k.setCount(d, 2);
  run(cmp(0x44, 0x400));
  t.equal(d.area!.wordLo(5), 0x33, 'dst_len > capacity: nothing copied at all');
  t.equal(d.area!.count, 2);
});

t.test('kcovMoveArea arithmetic on bare areas', async (t) => {
  const dst = Area.allocate(4);
  const src = Area.allocate(8);
  for (let i = 1; i <= 5; i++) src.u32[i * 2] = i;
  src.count = 5;
  t.equal(kcovMoveArea('pc', dst, src), 3);
  t.equal(dst.count, 3);
  t.equal(kcovMoveArea('pc', dst, src), 0);
  dst.count = 4;
  t.equal(kcovMoveArea('pc', dst, src), 0);
  t.equal(dst.count, 4);
});

function decode(body: Record<string, unknown>) {
  return decodeJsonEvents(body);
}

t.test('kcov_remote_stop: a section started before KCOV_DISABLE is discarded (sequence check)', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1] });
  const d = desc(k, fd);
  k.remotes.enterThreadSection(2, { handle: USB1 });
  t.equal(d.refs, 3, 'fd + task + section');
  k.eventsJson(2, { pcs: [1, 2] });
  k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
  t.equal(k.remotes.count, 0, 'kcov_remote_reset removed the handle');
  k.eventsJson(2, { pcs: [3] });
  k.remotes.leaveThreadSection(2);
  t.equal(d.area!.count, 0, 'nothing moved');
  t.equal(d.refs, 1, 'the section\'s reference is dropped at stop');
  t.equal(k.findThread(2).kcov, null);
  t.equal(k.findThread(2).kcovMode, 'DISABLED');
});

t.test('kcov_remote_stop: a section started before a re-enable is discarded too', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1] });
  const d = desc(k, fd);
  k.remotes.enterThreadSection(2, { handle: USB1 });
  k.eventsJson(2, { pcs: [1, 2] });
  k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
  k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 64, handles: [USB1] });
  t.equal(d.remote, true, 'remote again, same handle');
  k.remotes.leaveThreadSection(2);
  t.equal(d.area!.count, 0, 'sequence differs: discarded');
  k.remotes.enterThreadSection(2, { handle: USB1 });
  k.eventsJson(2, { pcs: [5] });
  k.remotes.leaveThreadSection(2);
  t.same(pcsOf(k, fd), [5], 'a section of the new enable is kept');
});

t.test('closed fd, owner exits, section still open: the section holds the last reference', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1], area_size: 32 });
  const d = desc(k, fd);
  k.remotes.enterThreadSection(2, { handle: USB1 });
  k.close(fd);
  k.exitThread(1);
  t.ok(d.area !== null, 'area alive while the section holds kcov');
  const before = k.memory;
  k.remotes.leaveThreadSection(2);
  t.equal(d.area, null, 'kcov_put at stop frees it');
  t.equal(k.memory, before - 16 * 8, 'the descriptor area is released; the section area stays pooled');
});

t.test('kcov_task_exit of the enabling thread removes all its handles', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1, USB2], common_handle: COMMON });
  t.equal(k.remotes.count, 3);
  k.exitThread(1);
  t.equal(k.remotes.count, 0);
  t.equal(desc(k, fd).kmode, 'INIT');
  t.equal(desc(k, fd).refs, 1);
  const r = section(k, USB1, 2, [1]);
  t.equal(r.ignored, 1, 'sections on a removed handle trace nothing');
});

t.test('thread exit inside a section ends the section (implicit kcov_remote_stop)', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1] });
  k.remotes.enterThreadSection(2, { handle: USB1 });
  k.eventsJson(2, { pcs: [4, 5] });
  k.exitThread(2);
  t.same(pcsOf(k, fd), [4, 5], 'its records are moved');
  t.equal(desc(k, fd).refs, 2, 'its reference is dropped');
  t.same(k.remotes.view(), [{ handle: '0x100000000000001', common: false, fd, owner: 1, mode: 'pc', area_size: 64, sections: [] }]);
});

t.test('kcov_remote_start in task context: nested start ignored; own kcov ignored; stop without start a no-op', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1, USB2] });
  k.remotes.enterThreadSection(2, { handle: USB1 });
  k.remotes.enterThreadSection(2, { handle: USB2 }); // WARN_ON(in_task() && kcov_mode_enabled(mode))
  t.equal(k.findThread(2).section!.remote, '0x100000000000001', 'the outer section stays');
  k.eventsJson(2, { pcs: [1] });
  k.remotes.leaveThreadSection(2);
  t.same(pcsOf(k, fd), [1]);
  k.remotes.leaveThreadSection(2);
  t.equal(desc(k, fd).refs, 2, 'a second stop changes nothing');
  // A task with its own KCOV_ENABLE: the start is ignored, its events stay its own.
  const own = initFd(k, 3, 16);
  k.ioctl(own, 'KCOV_ENABLE', 3, 0);
  k.remotes.enterThreadSection(3, { handle: USB1 });
  t.equal(k.findThread(3).section, null);
  k.eventsJson(3, { pcs: [9] });
  t.same(pcsOf(k, own), [9]);
  // The enabling task (mode REMOTE) cannot run a section either.
  k.remotes.enterThreadSection(1, { handle: USB1 });
  t.equal(k.findThread(1).section, null);
});

t.test('kcov_remote_start: an unregistered handle makes the section a no-op; an invalid one is EINVAL', async (t) => {
  const k = kernel();
  k.remotes.enterThreadSection(2, { handle: USB1 });
  t.equal(k.findThread(2).section, null);
  t.equal(k.eventsJson(2, { pcs: [1] }).ignored, 1);
  const r = section(k, USB1, 2, [1, 2]);
  t.same(r, { accepted: 0, dropped: 0, ignored: 2, count: null }, 'no moved field: no section ran');
  const rs = k.remotes.oneShot(USB1, { context: 'softirq', cpu: 0 }, () => decode({ pcs: [1] }));
  t.equal(rs.ignored, 1);
  t.equal(k.cpus[0]!.area, null, 'no per-CPU area allocated for nothing');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(2, { handle: '0x0200000000000001' })), 'EINVAL', 'kcov_remote_start WARNs: subsystem 2');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(2, { handle: '0x0000000100000000' })), 'EINVAL', 'bytes 4..6 set');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(2, { subsystem: 0, id: 1 })), 'EINVAL', 'not a Linux remote');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(2, { handle: '0x0' })), null, 'COMMON 0 is zero_valid for kcov_remote_start');
});

t.test('kcov_remote_start: area_size 0 means no section (vmalloc(0) is NULL); hardirq context is a no-op', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1], area_size: 0 });
  k.remotes.enterThreadSection(2, { handle: USB1 });
  t.equal(k.findThread(2).section, null);
  t.equal(desc(k, fd).refs, 2, 'kcov_put after the failed allocation');
  const r = k.remotes.oneShot(USB1, { context: 'interrupt', cpu: 0 }, () => decode({ pcs: [1] }));
  t.equal(r.ignored, 1, '!in_task() && !in_softirq_really(): return');
});

t.test('kcov_remote_softirq_start/stop: the interrupted task\'s own tracing is saved and restored', async (t) => {
  const k = kernel({ cpuAreaWords: 64 });
  const remote = remoteFd(k, 1, 16, { handles: [USB1] });
  const own = initFd(k, 5, 16);
  k.ioctl(own, 'KCOV_ENABLE', 5, 0);
  k.eventsJson(5, { pcs: [100] });
  const th = k.findThread(5);
  const trace = th.trace;
  const r = k.remotes.oneShot(USB1, { context: 'softirq', cpu: 1, tid: 5 }, () => decode({ pcs: [1, 2] }));
  t.equal(r.moved, 2);
  t.same(pcsOf(k, remote), [1, 2], 'softirq records go to the remote descriptor');
  t.same(pcsOf(k, own), [100], 'not to the interrupted task\'s');
  t.equal(th.kcov, desc(k, own), 't->kcov restored');
  t.equal(th.trace, trace, 'its area restored');
  t.equal(th.kcovMode, 'TRACE_PC');
  t.equal(th.kcovSoftirq, false);
  k.eventsJson(5, { pcs: [101] });
  t.same(pcsOf(k, own), [100, 101], 'and it keeps tracing');
  t.equal(k.cpus[1]!.area!.words, 64, 'per-CPU area of kernel.cpuAreaWords');
  t.equal(k.cpus[1]!.area!.count, 2);
  t.equal(k.cpus[1]!.section, null);
  t.equal(desc(k, remote).refs, 2);
});

t.test('softirq section interrupting a task inside its own remote section', async (t) => {
  const k = kernel({ cpuAreaWords: 64 });
  const a = remoteFd(k, 1, 16, { handles: [USB1] });
  const b = remoteFd(k, 2, 16, { handles: [USB2] });
  k.remotes.enterThreadSection(5, { handle: USB1 });
  k.eventsJson(5, { pcs: [1] });
  k.remotes.oneShot(USB2, { context: 'softirq', cpu: 0, tid: 5 }, () => decode({ pcs: [2] }));
  t.equal(k.findThread(5).section!.remote, '0x100000000000001', 'task section still open');
  k.eventsJson(5, { pcs: [3] });
  k.remotes.leaveThreadSection(5);
  t.same(pcsOf(k, a), [1, 3]);
  t.same(pcsOf(k, b), [2]);
});

t.test('softirq area: CONFIG_KCOV_IRQ_AREA_SIZE words by default, count reset at each start', async (t) => {
  const k = kernel();
  remoteFd(k, 1, 16, { handles: [USB1] });
  k.remotes.oneShot(USB1, { context: 'softirq', cpu: 0 }, () => decode({ pcs: [1, 2, 3] }));
  t.equal(k.cpus[0]!.area!.words, KCOV_IRQ_AREA_SIZE);
  const r = k.remotes.oneShot(USB1, { context: 'softirq', cpu: 0 }, () => decode({ pcs: [4] }));
  t.equal(r.count, 1, '*(u64 *)area = 0 at start');
});

t.test('remote areas are charged to KCOV_MEMORY_LIMIT: ENOMEM changes nothing; kcov_remote_area_get reuses by size', async (t) => {
  const k = kernel({ memoryLimit: 4096, cpuAreaWords: 1024 });
  const fd = remoteFd(k, 1, 16, { handles: [USB1], area_size: 1024 }); // 8 KiB > limit
  const d = desc(k, fd);
  t.equal(errnoOf(() => k.remotes.enterThreadSection(2, { handle: USB1 })), 'ENOMEM');
  t.equal(k.findThread(2).section, null);
  t.equal(k.findThread(2).kcovMode, 'DISABLED');
  t.equal(d.refs, 2, 'the section\'s reference is given back');
  t.equal(errnoOf(() => k.remotes.oneShot(USB1, { context: 'softirq', cpu: 0 }, () => decode({ pcs: [1] }))), 'ENOMEM', 'per-CPU area too');
  t.equal(d.refs, 2);
  t.equal(k.cpus[0]!.section, null);

  const k2 = kernel({ memoryLimit: 4096 });
  remoteFd(k2, 1, 16, { handles: [USB1], area_size: 300 }); // 2400 bytes: one fits, two do not
  section(k2, USB1, 2, [1]);
  const used = k2.memory;
  section(k2, USB1, 3, [2]);
  t.equal(k2.memory, used, 'the pooled area is reused, not allocated again');
  k2.remotes.enterThreadSection(4, { handle: USB1 });
  t.equal(errnoOf(() => k2.remotes.enterThreadSection(5, { handle: USB1 })), 'ENOMEM', 'a second concurrent area does not fit');
  k2.remotes.leaveThreadSection(4);
});

t.test('GET /remotes view: handles with fd, mode, area_size and open sections', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { trace_mode: 'cmp', area_size: 12, handles: [USB1], common_handle: COMMON });
  k.remotes.enterThreadSection(7, { handle: COMMON });
  const v = k.remotes.view();
  t.same(v, [
    { handle: '0x100000000000001', common: false, fd, owner: 1, mode: 'cmp', area_size: 12, sections: [] },
    { handle: '0x2a', common: true, fd, owner: 1, mode: 'cmp', area_size: 12, sections: [{ context: 'task', tid: 7 }] },
  ]);
});

// ---- KCOV_UNIQUE_ENABLE / KCOV_RESET_TRACE (patch v4 07/10, 08/10) -------------

t.test('kcov_handle_unique_enable: errno paths in order', async (t) => {
  const k = kernel();
  const fresh = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(fresh, 'KCOV_UNIQUE_ENABLE', 1, 1)), 'EINVAL', 'no area');
  const busy = initFd(k, 1, 8);
  k.ioctl(busy, 'KCOV_ENABLE', 1, 0);
  const fd = initFd(k, 1, 8);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 0)), 'EBUSY', 't->kcov set: EBUSY before the bitmap check');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 2, 0)), 'EINVAL', 'zero-sized bitmap');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 2, 7)), 'EINVAL', 'bitmap_words >= size - 1');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 2, 6)), null, 'size - 2 leaves two words for the trace');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 2, 6)), 'EINVAL', 'mode no longer INIT');
  t.equal(k.command('0x40086367')!.name, 'KCOV_UNIQUE_ENABLE', "_IOW('c', 103, unsigned long)");
  t.equal(k.command('0x6368')!.name, 'KCOV_RESET_TRACE', "_IO('c', 104)");
  t.equal(k.command('0x40186366')!.name, 'KCOV_REMOTE_ENABLE', "_IOW('c', 102, struct kcov_remote_arg)");
});

t.test('__sanitizer_cov_trace_pc_guard: de-duplication; init_pc_guard starts at 1 so bit 0 is never used', async (t) => {
  const k = kernel();
  const fd = initFd(k, 1, 16);
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 1); // 64 bits, trace of 15 words
  const d = desc(k, fd);
  const r = k.eventsJson(1, { pcs: [0x500, 0x600, 0x500, 0x600, 0x700] });
  t.equal(r.accepted, 3);
  t.equal(r.ignored, 2, 'seen PCs are not recorded');
  t.equal(d.area!.u32[0], 0b1110, 'indices 1, 2, 3: bit 0 is clear');
  t.equal(d.trace()!.count, 3, 'trace[0] is area[bitmap_words]');
  t.equal(d.area!.wordLo(1), 3);
});

t.test('__sanitizer_cov_trace_pc_guard: indices at or beyond bitmap_size are always appended', async (t) => {
  const k = kernel();
  const fd = initFd(k, 1, 256);
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 1);
  const first = Array.from({ length: 63 }, (_, i) => 0x1000 + i); // indices 1..63
  k.eventsJson(1, { pcs: first });
  const r = k.eventsJson(1, { pcs: [0x9000, 0x9000, 0x9000, 0x1000] }); // index 64 three times, then a seen one
  t.equal(r.accepted, 3, 'index 64 >= 64 bits: no de-duplication');
  t.equal(r.ignored, 1);
  t.equal(desc(k, fd).trace()!.count, 66);
});

t.test('KCOV_RESET_TRACE: errno paths, zeroes trace[0] and the bitmap', async (t) => {
  const k = kernel();
  const fd = initFd(k, 1, 16);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 1, 0)), 'EINVAL', 'not enabled: current->kcov != kcov');
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 2);
  k.eventsJson(1, { pcs: [1, 2] });
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 1, 1)), 'EINVAL', 'unused != 0');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 2, 0)), 'EINVAL', 'another thread');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 1, 0)), null);
  const d = desc(k, fd);
  t.equal(d.trace()!.count, 0);
  t.same([...d.area!.u32.subarray(0, 4)], [0, 0, 0, 0], 'bitmap_zero');
  t.equal(k.eventsJson(1, { pcs: [1, 2] }).accepted, 2, 'PCs are new again');
  k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 1, 0)), 'EINVAL', 'after DISABLE');
});

t.test('KCOV_RESET_TRACE on a remote descriptor: only the enabling task, and it resets area[0]', async (t) => {
  const k = kernel();
  const fd = remoteFd(k, 1, 16, { handles: [USB1] });
  section(k, USB1, 2, [1, 2]);
  k.remotes.enterThreadSection(2, { handle: USB1 });
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 2, 0)), 'EINVAL', 'a task inside a section: current->kcov == kcov but kcov->t != t');
  k.remotes.leaveThreadSection(2);
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 3, 0)), 'EINVAL', 'an unrelated task');
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_RESET_TRACE', 1, 0)), null, 'the enabling task');
  t.equal(desc(k, fd).area!.count, 0);
});

t.test('KCOV_MODE_UNIQUE_PC records PCs only: comparisons are not traced (write_comp_data needs TRACE_CMP)', async (t) => {
  const k = kernel();
  const fd = initFd(k, 1, 16);
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 1);
  const r = k.eventsJson(1, { cmps: [{ size: 8, arg1: 1, arg2: 2, pc: 3 }] });
  t.equal(r.ignored, 1);
  t.equal(desc(k, fd).trace()!.count, 0);
  k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
  k.ioctl(fd, 'KCOV_ENABLE', 1, 0);
  t.equal(desc(k, fd).trace()!.base, 0, 'kcov_reset gave the whole area back to the trace');
});
