/**
 * NetBSD sys/kern/subr_kcov.c v1.18 (seed 004), driven through the engine.
 * Each test names the kernel function whose rule it checks.
 */
import t from 'tap';
import { netbsd, NETBSD_MAX_ENTRIES, type NetbsdDescriptor, type NetbsdTypes } from '../../../src/engine/dialects/netbsd.js';
import { KcovError } from '../../../src/engine/errno.js';
import { Kernel } from '../../../src/engine/kernel.js';
import { MemoryBudget } from '../../../src/engine/memory.js';
import { Engine } from '../../../src/engine/engine.js';
import { invariantsAfterEach, typedKernel } from '../../helpers.js';

const SET = 'KCOV_IOC_SETBUFSIZE';
const EN = 'KCOV_IOC_ENABLE';
const DIS = 'KCOV_IOC_DISABLE';
const ATT = 'KCOV_IOC_REMOTE_ATTACH';
const DET = 'KCOV_IOC_REMOTE_DETACH';
const VHCI = { subsystem: 0, id: 0x1_0000_0001 }; // KCOV_REMOTE_VHCI_ID(1, 1)
const VHCI_KEY = '0:4294967297';

const checked = invariantsAfterEach(t);

function kernel(opts: { maxEntries?: number; budget?: number } = {}): Kernel<NetbsdTypes> {
  const e = checked(new Engine({ dialect: 'linux', ncpus: 2, memoryLimit: opts.budget ?? 64 * 1024 * 1024 }));
  return typedKernel(e.createKernel({ name: 'nbsd', dialect: 'netbsd', maxEntries: opts.maxEntries }), netbsd);
}

interface T {
  equal(a: unknown, b: unknown, m: string): void;
  fail(m: string): void;
}

function errno(tt: T, fn: () => unknown, name: string, msg: string): void {
  try {
    fn();
    tt.fail(`${msg}: no error, expected ${name}`);
  } catch (e) {
    if (!(e instanceof KcovError)) throw e;
    tt.equal(e.errno, name, msg);
  }
}

function nd(k: Kernel, fd: number): NetbsdDescriptor {
  return k.descriptor(fd) as NetbsdDescriptor;
}

function pcs(k: Kernel, tid: number, ...values: number[]) {
  return k.eventsJson(tid, { pcs: values });
}

/** A descriptor with a buffer of `n` entries, opened by `tid`. */
function sized(k: Kernel, n = 512, tid = 1): number {
  const fd = k.open(tid).fd;
  k.ioctl(fd, SET, tid, n);
  return fd;
}

t.test('kcov_fops_ioctl: an unknown request is EINVAL, by name or by number', async (t) => {
  const k = kernel();
  const fd = k.open(1).fd;
  errno(t, () => k.ioctl(fd, 'KIOREMOTEATTACH', 1, 0), 'EINVAL', 'OpenBSD name');
  errno(t, () => k.ioctl(fd, '0x20004b04', 1, 0), 'EINVAL', 'unused request number');
  t.equal(k.ioctl(fd, '0x80084b01', 1, 2).ret, 0, 'KCOV_IOC_SETBUFSIZE by number');
  t.equal(k.ioctl(fd, String(0x80044b02), 1, 1).ret, 0, 'KCOV_IOC_ENABLE by decimal number');
  t.equal(k.ioctl(fd, '0x20004b03', 1, undefined).ret, 0, 'KCOV_IOC_DISABLE by number');
});

t.test('kcov_allocbuf: nent < 2 or > KCOV_BUF_MAX_ENTRIES is EINVAL, a second size EEXIST', async (t) => {
  const k = kernel();
  const fd = k.open(1).fd;
  errno(t, () => k.ioctl(fd, SET, 1, 0), 'EINVAL', '0 entries');
  errno(t, () => k.ioctl(fd, SET, 1, 1), 'EINVAL', '1 entry');
  errno(t, () => k.ioctl(fd, SET, 1, NETBSD_MAX_ENTRIES + 1), 'EINVAL', '256Ki + 1');
  errno(t, () => k.ioctl(fd, SET, 1, '0xffffffffffffffff'), 'EINVAL', 'UINT64_MAX');
  t.equal(nd(k, fd).area, null, 'nothing allocated by the failures');
  t.equal(k.memory, 0);
  t.equal(k.ioctl(fd, SET, 1, 2).ret, 0, '2 entries');
  t.equal(nd(k, fd).area!.words, 2);
  t.equal(nd(k, fd).bufsize, 4096, 'bufsize = roundup(nent * 8, PAGE_SIZE)');
  errno(t, () => k.ioctl(fd, SET, 1, 2), 'EEXIST', 'second KCOV_IOC_SETBUFSIZE');
  errno(t, () => k.ioctl(fd, SET, 1, 0), 'EINVAL', 'range checked before EEXIST');
  const big = k.open(1).fd;
  t.equal(k.ioctl(big, SET, 1, NETBSD_MAX_ENTRIES).ret, 0, '256Ki entries is the largest');
  t.equal(k.memory, (2 + NETBSD_MAX_ENTRIES) * 8, 'areas charged to the kernel');
});

t.test('kcov_setbufsize: EBUSY while enabled (before EEXIST), 0 with a remote attached', async (t) => {
  const k = kernel();
  const fd = sized(k);
  k.ioctl(fd, EN, 1, 'pc');
  errno(t, () => k.ioctl(fd, SET, 1, 512), 'EBUSY', 'enabled: EBUSY, not EEXIST');
  k.remotes.register(VHCI_KEY);
  const r = k.open(1).fd;
  k.ioctl(r, ATT, 1, VHCI);
  t.equal(k.ioctl(r, SET, 1, 0).ret, 0, '"buffer allocated remotely": returns before the range check');
  t.equal(nd(k, r).area, null, 'no local buffer');
});

t.test('max_entries of a kernel lowers or raises KCOV_BUF_MAX_ENTRIES', async (t) => {
  const low = kernel({ maxEntries: 1024 });
  errno(t, () => sized(low, 1025), 'EINVAL', 'above a lowered limit');
  t.ok(sized(low, 1024));
  t.equal(low.limits().maxEntries, 1024);
  const high = kernel({ maxEntries: 512 * 1024 });
  const fd = sized(high, 512 * 1024);
  t.equal(nd(high, fd).area!.words, 512 * 1024, 'syzkaller asks 512Ki entries');
  errno(t, () => sized(high, 512 * 1024 + 1), 'EINVAL', 'above a raised limit');
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 30 });
  const made = e.createKernel({ name: 'nbsd', dialect: 'netbsd', maxEntries: 524288 });
  t.equal(made.limits().maxEntries, 524288, 'Engine.createKernel passes it through');
  errno(t, () => e.createKernel({ dialect: 'netbsd', maxEntries: 1 }), 'EINVAL', 'below the minimum of 2');
  e.close();
});

t.test('kcov_enable: checks in order EINVAL, remote, EBUSY, EBUSY, ENOBUFS', async (t) => {
  const k = kernel();
  const fd = k.open(1).fd;
  errno(t, () => k.ioctl(fd, EN, 1, 3), 'EINVAL', 'mode 3 before the missing buffer');
  errno(t, () => k.ioctl(fd, EN, 1, 'trace'), 'EINVAL', 'unknown mode name');
  errno(t, () => k.ioctl(fd, EN, 1, 'none'), 'ENOBUFS', 'no buffer: ENOBUFS');
  k.ioctl(fd, SET, 1, 64);
  t.equal(k.ioctl(fd, EN, 1, 'none').ret, 0, 'KCOV_MODE_NONE is a valid mode');
  t.equal(nd(k, fd).state, 'ENABLED');
  t.equal(nd(k, fd).mode, null, 'enabled in NONE traces no kind');
  errno(t, () => k.ioctl(fd, EN, 1, 1), 'EBUSY', 'already enabled');
  errno(t, () => k.ioctl(fd, EN, 2, 1), 'EBUSY', 'enabled by another LWP: kd->enabled first');
  const other = sized(k, 64);
  errno(t, () => k.ioctl(other, EN, 1, 1), 'EBUSY', 'LWP already has a kcov (l_kcov)');
  const empty = k.open(1).fd;
  errno(t, () => k.ioctl(empty, EN, 1, 1), 'EBUSY', 'l_kcov is checked before the buffer');
  errno(t, () => k.ioctl(empty, EN, 1, 4), 'EINVAL', 'the mode before everything');
  t.equal(k.ioctl(other, EN, 2, 2).ret, 0, 'another LWP enables the other fd');
  t.equal(nd(k, other).mode, 'cmp');
});

t.test('KCOV_MODE_NONE records nothing; PC and CMP keep to their kind', async (t) => {
  const k = kernel();
  const fd = sized(k, 16);
  k.ioctl(fd, EN, 1, 0);
  t.same(pcs(k, 1, 1, 2, 3), { accepted: 0, dropped: 0, ignored: 3, count: null }, 'NONE: ignored');
  k.ioctl(fd, DIS, 1, undefined);
  k.ioctl(fd, EN, 1, 1);
  const cmp = { cmps: [{ size: 8, const: false, arg1: 1, arg2: 2, pc: 3 }] };
  t.match(k.eventsJson(1, cmp), { accepted: 0, ignored: 1 }, 'CMP events ignored in PC mode');
  t.match(pcs(k, 1, 7), { accepted: 1, count: 1 });
  k.ioctl(fd, DIS, 1, undefined);
  k.ioctl(fd, EN, 1, 'cmp');
  t.match(pcs(k, 1, 8), { accepted: 0, ignored: 1 }, 'PCs ignored in CMP mode');
  t.match(k.eventsJson(1, cmp), { accepted: 1, count: 2 }, 'the buffer is not reset by enable');
});

t.test('trace_pc / trace_cmp capacity: nent - 1 PCs, floor((nent - 1) / 4) comparisons', async (t) => {
  const k = kernel();
  const fd = sized(k, 9);
  k.ioctl(fd, EN, 1, 'pc');
  t.match(pcs(k, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10), { accepted: 8, dropped: 2, count: 8 }, 'idx < bufnent');
  k.ioctl(fd, DIS, 1, undefined);
  k.setCount(nd(k, fd), 0);
  k.ioctl(fd, EN, 1, 'cmp');
  const c = { size: 4, const: true, arg1: 1, arg2: 2, pc: 3 };
  t.match(k.eventsJson(1, { cmps: [c, c, c] }), { accepted: 2, dropped: 1, count: 2 }, '(idx * 4 + 4) <= bufnent');
});

t.test('kcov_disable: ENOENT when not enabled or owned by another LWP', async (t) => {
  const k = kernel();
  const fd = k.open(1).fd;
  errno(t, () => k.ioctl(fd, DIS, 1, undefined), 'ENOENT', 'no buffer, not enabled');
  k.ioctl(fd, SET, 1, 64);
  errno(t, () => k.ioctl(fd, DIS, 1, undefined), 'ENOENT', 'not enabled');
  k.ioctl(fd, EN, 1, 'pc');
  errno(t, () => k.ioctl(fd, DIS, 2, undefined), 'ENOENT', 'another LWP');
  t.equal(nd(k, fd).owner!.tid, 1, 'still owned by LWP 1');
  t.equal(k.ioctl(fd, DIS, 1, undefined).ret, 0);
  errno(t, () => k.ioctl(fd, DIS, 1, undefined), 'ENOENT', 'twice');
  t.equal(nd(k, fd).state, 'READY');
  t.equal(k.findThread(1).kcov, null, 'l_kcov cleared');
});

t.test('kcov_remote_register: a max-size buffer charged to the budget; duplicates are not new', async (t) => {
  const k = kernel();
  t.equal(k.remotes.register('0:4294967297'), true);
  t.equal(k.memory, NETBSD_MAX_ENTRIES * 8, 'KCOV_BUF_MAX_ENTRIES entries = 2 MiB');
  t.equal(k.remotes.register('0x0:0x100000001'), false, 'same (subsystem, id) in hex');
  t.equal(k.remotes.count, 1);
  t.equal(k.remotes.key({ subsystem: '0x0', id: '4294967297' }), VHCI_KEY, 'canonical key is decimal subsystem:id');
  errno(t, () => k.remotes.key('4242'), 'EINVAL', 'no colon');
  errno(t, () => k.remotes.key('0:x'), 'EINVAL', 'not a number');
  errno(t, () => k.remotes.key({ handle: '0x1' }), 'EINVAL', 'a Linux handle');
  const raised = kernel({ maxEntries: 512 * 1024 });
  raised.remotes.register('0:1');
  t.equal(raised.memory, 512 * 1024 * 8, 'a raised max_entries sizes the remote buffer too');
  const small = kernel({ budget: 1024 * 1024 });
  errno(t, () => small.remotes.register('0:1'), 'ENOMEM', 'past the memory budget');
  t.equal(small.remotes.count, 0, 'nothing registered');
});

t.test('kcov_remote_attach / kcov_remote_detach errno paths', async (t) => {
  const k = kernel();
  const fd = sized(k, 64);
  errno(t, () => k.ioctl(fd, ATT, 1, VHCI), 'ENOENT', 'not registered');
  errno(t, () => k.ioctl(fd, ATT, 1, 5), 'EFAULT', 'not a struct');
  errno(t, () => k.ioctl(fd, ATT, 1, { subsystem: 0 }), 'EINVAL', 'no id');
  errno(t, () => k.ioctl(fd, DET, 1, undefined), 'ENOENT', 'nothing attached');
  k.ioctl(fd, EN, 1, 'pc');
  errno(t, () => k.ioctl(fd, ATT, 1, VHCI), 'EEXIST', 'enabled: EEXIST before the lookup');
  errno(t, () => k.ioctl(fd, DET, 1, undefined), 'EEXIST', 'enabled: EEXIST before ENOENT');
  k.remotes.register(VHCI_KEY);
  k.remotes.register('0:2');
  const a = k.open(2).fd;
  t.equal(k.ioctl(a, ATT, 2, VHCI).ret, 0);
  t.equal(nd(k, a).state, 'REMOTE');
  t.equal(k.ioctl(a, ATT, 2, { subsystem: 0, id: 2 }).ret, 0, 'a second attach replaces the first');
  t.equal(nd(k, a).remote!.key, '0:2');
  k.ioctl(a, EN, 2, 'pc');
  t.equal(nd(k, a).state, 'REMOTE_ENABLED');
  t.equal(nd(k, a).enabled, false, 'the local kd is not enabled in remote mode');
  t.equal(k.ioctl(a, DET, 2, undefined).ret, 0, 'detach while the remote is enabled');
  t.equal(k.state.remotes.get('0:2')!.enabled, false, 'detach disabled the remote');
  t.equal(nd(k, a).state, 'NOBUF');
});

t.test('kcov_enable / kcov_disable on an attached fd act on the shared remote', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const a = k.open(1).fd;
  const b = k.open(2).fd;
  k.ioctl(a, ATT, 1, VHCI);
  k.ioctl(b, ATT, 2, VHCI);
  errno(t, () => k.ioctl(a, DIS, 1, undefined), 'ENOENT', 'kcov_remote_disable: not enabled');
  errno(t, () => k.ioctl(a, EN, 1, 9), 'EINVAL', 'mode checked before the remote');
  t.equal(k.ioctl(a, EN, 1, 'pc').ret, 0, 'no local buffer needed');
  errno(t, () => k.ioctl(b, EN, 2, 'pc'), 'EBUSY', 'kcov_remote_enable: already enabled, through any fd');
  errno(t, () => k.ioctl(a, EN, 1, 'pc'), 'EBUSY', 'and through the same fd');
  t.equal(k.findThread(1).kcov, null, 'remote enable binds no LWP');
  const own = sized(k, 64, 1);
  t.equal(k.ioctl(own, EN, 1, 'pc').ret, 0, 'the LWP may still enable a local kd');
  t.equal(k.ioctl(b, DIS, 2, undefined).ret, 0, 'any attached fd disables it, from any LWP');
  errno(t, () => k.ioctl(a, DIS, 1, undefined), 'ENOENT', 'disabled already');
});

t.test('kcov_fops_mmap: ENOMEM before the buffer; an attached fd maps the remote buffer', async (t) => {
  const k = kernel();
  const fd = k.open(1).fd;
  errno(t, () => k.mapping(nd(k, fd)), 'ENOMEM', 'size + off > bufsize (0)');
  k.remotes.register(VHCI_KEY);
  k.ioctl(fd, ATT, 1, VHCI);
  t.equal(k.mapping(nd(k, fd)).area.words, NETBSD_MAX_ENTRIES, 'the remote buffer');
  k.ioctl(fd, DET, 1, undefined);
  errno(t, () => k.mapping(nd(k, fd)), 'ENOMEM', 'detached: back to its own (absent) buffer');
  k.ioctl(fd, SET, 1, 8);
  t.equal(k.mapping(nd(k, fd)).area.words, 8);
  k.ioctl(fd, ATT, 1, VHCI);
  k.setCount(nd(k, fd), 5);
  t.equal(k.mapping(nd(k, fd)).trace.count, 5, 'cover[0] = n writes the remote count');
  t.equal(nd(k, fd).area!.count, 0, 'not the local one');
});

t.test('kcov_remote_enter / kcov_remote_leave: only an enabled remote is traced, into its own buffer', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const a = k.open(1).fd;
  const b = k.open(1).fd;
  k.ioctl(a, ATT, 1, VHCI);
  k.ioctl(b, ATT, 1, VHCI);
  const section = (tid: number, ...v: number[]) =>
    k.remotes.oneShot(VHCI_KEY, { context: 'task', tid }, () => [
      { kind: 'pc' as const, records: v.length, chunks: [new Uint8Array(new BigUint64Array(v.map(BigInt)).buffer)] },
    ]);
  t.match(section(50, 1, 2), { accepted: 0, ignored: 2 }, 'remote not enabled: l_kcov stays NULL');
  k.ioctl(a, EN, 1, 'pc');
  t.match(section(50, 0x10, 0x20), { accepted: 2, count: 2 });
  t.same(k.mapping(nd(k, b)).area.count, 2, 'seen through every attached fd');
  t.equal(k.findThread(50).section, null, 'one-shot section left');
  errno(t, () => k.remotes.oneShot('0:7', { context: 'task', tid: 50 }, () => []), 'ENOENT', 'unknown remote (the kernel panics)');
  errno(t, () => k.remotes.oneShot(VHCI_KEY, { context: 'interrupt', cpu: 0 }, () => []), 'EOPNOTSUPP', 'no interrupt context');

  // An open section: enabling after enter does not reach it.
  k.ioctl(b, DIS, 1, undefined);
  k.remotes.enterThreadSection(60, VHCI);
  k.ioctl(a, EN, 1, 'pc');
  t.match(pcs(k, 60, 1), { ignored: 1 }, 'enabled after enter: not traced');
  k.remotes.leaveThreadSection(60);
  k.remotes.enterThreadSection(60, VHCI);
  t.match(pcs(k, 60, 3), { accepted: 1, count: 3 }, 'enabled at enter: traced');
  errno(t, () => k.remotes.enterThreadSection(61, VHCI), 'EBUSY', 'KASSERT(refs == 1): another LWP inside');
  errno(t, () => k.remotes.enterThreadSection(60, { subsystem: 0, id: 9 }), 'ENOENT', 'unknown remote');
  k.ioctl(a, DIS, 1, undefined);
  t.match(pcs(k, 60, 4), { ignored: 1 }, 'disabled mid-section: !kd->enabled');
  k.ioctl(a, EN, 1, 'pc');
  t.match(pcs(k, 60, 5), { accepted: 1, count: 4 }, 're-enabled: l_kcov still points at the remote');
  k.remotes.leaveThreadSection(60);
  t.match(pcs(k, 60, 6), { ignored: 1 }, 'after leave: l_kcov = NULL');
  errno(t, () => k.remotes.leaveThreadSection(60), 'ENOENT', 'leave without enter (KASSERT(refs == 0))');
  errno(t, () => k.remotes.leaveThreadSection(99), 'ESRCH', 'no such thread');
});

t.test('kcov_remote_enter: an LWP with its own kcov may not enter (KASSERT(l->l_kcov == NULL))', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const fd = sized(k, 64, 7);
  k.ioctl(fd, EN, 7, 'pc');
  errno(t, () => k.remotes.enterThreadSection(7, VHCI), 'EBUSY', 'refused');
  t.equal(k.findThread(7).section, null, 'nothing entered');
  t.equal(k.state.remotes.get(VHCI_KEY)!.refcount, 0, 'refcount unchanged');
});

t.test('kcov_remote_enter takes l_kcov: a local ENABLE inside an enabled section is EBUSY', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const r = k.open(1).fd;
  k.ioctl(r, ATT, 1, VHCI);
  k.ioctl(r, EN, 1, 'pc');
  k.remotes.enterThreadSection(5, VHCI);
  const own = sized(k, 64, 5);
  errno(t, () => k.ioctl(own, EN, 5, 'pc'), 'EBUSY', 'l_kcov is the remote kd');
});

t.test('kcov_silence_enter / kcov_silence_leave: a flag on l_kcov, not nested', async (t) => {
  const k = kernel();
  const fd = sized(k, 64);
  k.remotes.silence(1, true);
  t.equal(k.findThread(1).silenced, false, 'no l_kcov: a no-op');
  k.ioctl(fd, EN, 1, 'pc');
  t.equal(nd(k, fd).silenced, false, 'the earlier enter did not stick');
  k.remotes.silence(1, true);
  k.remotes.silence(1, true);
  t.match(pcs(k, 1, 1), { accepted: 0, ignored: 1 }, 'silenced: ignored');
  k.remotes.silence(1, false);
  t.match(pcs(k, 1, 2), { accepted: 1 }, 'one leave ends two enters (a bool, no nesting)');
  k.remotes.silence(1, false);
  t.match(pcs(k, 1, 3), { accepted: 1 }, 'an unbalanced leave is a no-op');
  k.remotes.silence(1, true);
  k.ioctl(fd, DIS, 1, undefined);
  k.ioctl(fd, EN, 2, 'pc');
  t.equal(k.findThread(2).silenced, true, 'kd->silenced outlives the disable: the next LWP is silenced too');
  t.match(pcs(k, 2, 4), { ignored: 1 });
  k.remotes.silence(2, false);
  t.match(pcs(k, 2, 5), { accepted: 1 });
  errno(t, () => k.remotes.silence(77, false), 'ESRCH', 'leave on an unknown thread');
});

t.test('kcov_silence_enter inside a section silences the remote kd', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const fd = k.open(1).fd;
  k.ioctl(fd, ATT, 1, VHCI);
  k.ioctl(fd, EN, 1, 'pc');
  k.remotes.enterThreadSection(9, VHCI);
  k.remotes.silence(9, true);
  t.match(pcs(k, 9, 1), { ignored: 1 });
  k.remotes.silence(9, false);
  t.match(pcs(k, 9, 2), { accepted: 1 });
});

t.test('kcov_fops_close: a kd enabled at close is freed by the owner LWP (lwpfree)', async (t) => {
  const k = kernel();
  const fd = sized(k, 64, 1);
  const d = nd(k, fd);
  k.ioctl(fd, EN, 1, 'pc');
  k.close(fd);
  t.equal(d.state, 'LWPFREE');
  t.equal(d.closed, true);
  errno(t, () => k.descriptor(fd), 'EBADF', 'the fd is gone');
  t.match(pcs(k, 1, 1), { accepted: 1 }, 'still traced: enabled stays true until the LWP exits');
  t.equal(k.memory, 64 * 8, 'buffer still held');
  k.exitThread(1);
  t.equal(d.state, 'FREED', 'kcov_lwp_free freed it');
  t.equal(k.memory, 0, 'memory returned');
});

t.test('kcov_fops_close: a kd not enabled is freed at once; an attached fd disables its remote', async (t) => {
  const k = kernel();
  const fd = sized(k, 64, 1);
  k.close(fd);
  t.equal(k.memory, 0);
  k.remotes.register(VHCI_KEY);
  const a = k.open(1).fd;
  const b = k.open(1).fd;
  k.ioctl(a, ATT, 1, VHCI);
  k.ioctl(b, ATT, 1, VHCI);
  k.ioctl(a, EN, 1, 'pc');
  k.close(a);
  t.equal(nd(k, b).state, 'REMOTE', 'the shared remote is disabled for the other fd too');
  t.equal(k.memory, NETBSD_MAX_ENTRIES * 8, 'the remote buffer stays registered');
});

t.test('kcov_lwp_free: the owner exit disables the kd; another LWP may enable it', async (t) => {
  const k = kernel();
  const fd = sized(k, 64, 1);
  k.ioctl(fd, EN, 1, 'pc');
  pcs(k, 1, 1, 2);
  k.exitThread(1);
  t.equal(nd(k, fd).state, 'READY');
  t.equal(nd(k, fd).owner, null);
  t.equal(nd(k, fd).area!.count, 2, 'the records stay');
  t.equal(k.ioctl(fd, EN, 2, 'pc').ret, 0, 'LWP 2 enables it');
  t.equal(k.ioctl(fd, DIS, 2, undefined).ret, 0);
});

t.test('kcov_lwp_free inside a remote section disables the remote', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  const fd = k.open(1).fd;
  k.ioctl(fd, ATT, 1, VHCI);
  k.ioctl(fd, EN, 1, 'pc');
  k.remotes.enterThreadSection(3, VHCI);
  k.exitThread(3);
  t.equal(nd(k, fd).state, 'REMOTE', 'l_kcov was the remote kd: enabled = false');
  // Not in the kernel: the emulator closes the section so the remote can be entered again.
  k.ioctl(fd, EN, 1, 'pc');
  t.doesNotThrow(() => k.remotes.enterThreadSection(4, VHCI));
});

t.test('kcov_remote_leave clears l_kcov even when it is a local kd enabled inside the section', async (t) => {
  const k = kernel();
  k.remotes.register(VHCI_KEY);
  k.remotes.enterThreadSection(5, VHCI); // remote not enabled: l_kcov stays NULL
  const own = sized(k, 64, 5);
  k.ioctl(own, EN, 5, 'pc');
  k.remotes.leaveThreadSection(5);
  t.equal(nd(k, own).enabled, true, 'the kd stays enabled');
  t.equal(nd(k, own).owner, null, 'but no LWP holds it');
  errno(t, () => k.ioctl(own, DIS, 5, undefined), 'ENOENT', 'so nobody can disable it');
});

t.test('unregister (not in NetBSD): ENOENT when unknown, EBUSY while attached or entered', async (t) => {
  const k = kernel();
  errno(t, () => k.remotes.unregister('0:1'), 'ENOENT', 'unknown');
  k.remotes.register('0:1');
  const fd = k.open(1).fd;
  k.ioctl(fd, ATT, 1, { subsystem: 0, id: 1 });
  errno(t, () => k.remotes.unregister('0:1'), 'EBUSY', 'attached');
  k.ioctl(fd, DET, 1, undefined);
  k.remotes.enterThreadSection(2, '0:1');
  errno(t, () => k.remotes.unregister('0:1'), 'EBUSY', 'section open');
  k.remotes.leaveThreadSection(2);
  k.remotes.unregister('0:1');
  t.equal(k.remotes.count, 0);
  t.equal(k.memory, 0, 'buffer released');
});

t.test('kernel teardown releases descriptors and remote buffers', async (t) => {
  const budget = new MemoryBudget(64 * 1024 * 1024);
  const k = new Kernel({ name: 'x', dialect: netbsd, ncpus: 1, budget });
  k.remotes.register('0:1');
  const fd = sized(k, 64, 1);
  k.ioctl(fd, EN, 1, 'pc');
  k.close(fd);
  k.destroy();
  t.equal(budget.used, 0);
});
