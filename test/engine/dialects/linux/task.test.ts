/**
 * Linux kernel/kcov.c, engine level: the state machine and each errno path
 * of kcov_ioctl / kcov_ioctl_locked, kcov_close, kcov_task_exit.
 */
import t from 'tap';
import { Engine } from '../../../../src/engine/engine.js';
import type { Kernel as AnyKernel } from '../../../../src/engine/kernel.js';
import { linux, type LinuxTypes } from '../../../../src/engine/dialects/linux/index.js';
import { errnoOf, invariantsAfterEach, typedKernel } from '../../../helpers.js';

type Kernel = AnyKernel<LinuxTypes>;

const checked = invariantsAfterEach(t);

function kernel(memoryLimit = 1 << 30): Kernel {
  return typedKernel(checked(new Engine({ dialect: 'linux', ncpus: 2, memoryLimit })).kernel('default'), linux);
}

function pcs(k: Kernel, tid: number, ...v: number[]) {
  return k.eventsJson(tid, { pcs: v });
}

t.test('open gives DISABLED descriptors with increasing, never reused fds', async (t) => {
  const k = kernel();
  const a = k.open();
  const b = k.open();
  t.equal(a.state, 'DISABLED');
  t.equal(b.fd, a.fd + 1);
  k.close(b.fd);
  t.equal(k.open().fd, b.fd + 1, 'a closed fd number is not handed out again');
});

t.test('KCOV_INIT_TRACE: kcov_ioctl size checks, then EBUSY once initialised', async (t) => {
  const k = kernel();
  const d = k.open();
  // kcov_ioctl: "if (size < 2 || size > INT_MAX / sizeof(unsigned long)) return -EINVAL;"
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 0)), 'EINVAL', 'size 0');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 1)), 'EINVAL', 'size 1');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 268435456)), 'EINVAL', 'INT_MAX/8 + 1');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, '0xffffffffffffffff')), 'EINVAL', 'ULONG_MAX');
  t.equal(d.state, 'DISABLED', 'failed INIT_TRACE leaves the descriptor DISABLED');
  t.equal(k.memory, 0, 'and allocates nothing');
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 2);
  t.equal(d.state, 'INIT');
  t.equal(d.area?.words, 2);
  // "if (kcov->mode != KCOV_MODE_DISABLED) ... return -EBUSY;"
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 16)), 'EBUSY', 'second INIT_TRACE');
  t.equal(k.memory, 16, 'the refused second buffer is freed');
});

t.test('KCOV_INIT_TRACE allocates before the mode check, so ENOMEM wins over EBUSY', async (t) => {
  const k = kernel(1024);
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 64);
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 1024)), 'ENOMEM', 'vmalloc_user fails first');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8)), 'EBUSY');
});

t.test('KCOV_ENABLE errno paths in kcov_ioctl_locked order', async (t) => {
  const k = kernel();
  const d = k.open();
  // "if (kcov->mode != KCOV_MODE_INIT || !kcov->area) return -EINVAL;"
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0)), 'EINVAL', 'enable before INIT_TRACE');
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  // kcov_get_mode: neither KCOV_TRACE_PC nor KCOV_TRACE_CMP
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 1, 2)), 'EINVAL', 'mode 2');
  t.equal(d.state, 'INIT', 'a bad mode binds nothing');
  t.equal(k.ensureThread(1).kcov, null);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  t.equal(d.state, 'TRACE_PC');
  t.equal(d.owner?.tid, 1);
  // Same fd again: mode is no longer INIT, EINVAL comes before EBUSY.
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 2, 0)), 'EINVAL', 'enable twice (same fd, other thread)');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0)), 'EINVAL', 'enable twice (same thread)');
  // "if (kcov->t != NULL || t->kcov != NULL) return -EBUSY;" : a second fd on a thread that has one.
  const e = k.open();
  k.ioctl(e.fd, 'KCOV_INIT_TRACE', 1, 8);
  t.equal(errnoOf(() => k.ioctl(e.fd, 'KCOV_ENABLE', 1, 0)), 'EBUSY', 'thread already has a kcov');
  // EBUSY is checked before the mode, so a bad mode on a busy thread is still EBUSY.
  t.equal(errnoOf(() => k.ioctl(e.fd, 'KCOV_ENABLE', 1, 7)), 'EBUSY', 'EBUSY before the mode check');
  k.ioctl(e.fd, 'KCOV_ENABLE', 2, 'cmp');
  t.equal(e.state, 'TRACE_CMP', 'another thread may enable it in CMP mode');
});

t.test('KCOV_DISABLE errno paths and the return to INIT', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  // "if (unused != 0 || current->kcov != kcov) return -EINVAL;"
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_DISABLE', 1, 0)), 'EINVAL', 'not enabled');
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_DISABLE', 2, 0)), 'EINVAL', 'disable from another thread');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_DISABLE', 1, 1)), 'EINVAL', 'non-zero argument');
  t.equal(d.state, 'TRACE_PC', 'failed disables change nothing');
  const seq = (d.extra() as { sequence: number }).sequence;
  k.ioctl(d.fd, 'KCOV_DISABLE', 1, 0);
  t.equal(d.state, 'INIT', 'kcov_reset: back to INIT');
  t.equal(d.owner, null);
  t.equal(k.ensureThread(1).kcov, null);
  t.equal((d.extra() as { sequence: number }).sequence, seq + 1, 'kcov_reset bumps the sequence');
  k.ioctl(d.fd, 'KCOV_ENABLE', 2, 1);
  t.equal(d.owner?.tid, 2, 'after DISABLE another thread may enable the same fd');
});

t.test('unknown requests are ENOTTY by name and by number; names and numbers are the same command', async (t) => {
  const k = kernel();
  const d = k.open();
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_BOGUS', 1, 0)), 'ENOTTY');
  t.equal(errnoOf(() => k.ioctl(d.fd, '0x6399', 1, 0)), 'ENOTTY');
  t.equal(errnoOf(() => k.ioctl(d.fd, '25444', 1, 0)), 'EINVAL', 'KCOV_ENABLE by decimal number reaches the driver');
  k.ioctl(d.fd, '0x80086301', 1, 8);
  t.equal(d.state, 'INIT', 'KCOV_INIT_TRACE by hex number');
  k.ioctl(d.fd, '0x6364', 1, 0);
  t.equal(d.state, 'TRACE_PC', 'KCOV_ENABLE by hex number');
  k.ioctl(d.fd, '25445', 1, 0);
  t.equal(d.state, 'INIT', 'KCOV_DISABLE by decimal number');
});

t.test('an unknown fd is EBADF before the command is looked at', async (t) => {
  const k = kernel();
  t.equal(errnoOf(() => k.ioctl(99, 'KCOV_BOGUS', 1, 0)), 'EBADF');
});

t.test('only the bound thread traces, in its mode; the other mode is ignored', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  t.same(pcs(k, 1, 5), { accepted: 0, dropped: 0, ignored: 1, count: null }, 'INIT: not traced');
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 'pc');
  t.same(pcs(k, 1, 5, 6), { accepted: 2, dropped: 0, ignored: 0, count: 2 });
  t.same(pcs(k, 2, 7), { accepted: 0, dropped: 0, ignored: 1, count: null }, 'another thread is not traced');
  const cmp = k.eventsJson(1, { cmps: [{ size: 8, arg1: 1, arg2: 2, pc: 3 }] });
  t.same(cmp, { accepted: 0, dropped: 0, ignored: 1, count: null }, 'CMP records in PC mode are ignored');
});

t.test('PC capacity is size - 1 and the rest is dropped (__sanitizer_cov_trace_pc: pos < t->kcov_size)', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 4);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  t.same(pcs(k, 1, 1, 2, 3, 4, 5), { accepted: 3, dropped: 2, ignored: 0, count: 3 });
  t.same(pcs(k, 1, 6), { accepted: 0, dropped: 1, ignored: 0, count: 3 }, 'still full');
});

t.test('CMP capacity is floor((size - 1) / 4) (write_comp_data: end_pos <= max_pos)', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 12); // (12-1)/4 = 2
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 1);
  const rec = { size: 4, const: true, arg1: '0x10', arg2: '0x20', pc: '0xffffffff81000000' };
  t.same(k.eventsJson(1, { cmps: [rec, rec, rec] }), { accepted: 2, dropped: 1, ignored: 0, count: 2 });
  const u = d.area!.u32;
  t.same([u[2], u[4], u[6], u[8], u[9]], [(2 << 1) | 1, 0x10, 0x20, 0x81000000, 0xffffffff], 'type, arg1, arg2, pc');
});

t.test('close while enabled: the bound thread keeps tracing until it exits, then the area is freed (kcov_close, kcov_task_exit)', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  k.close(d.fd);
  t.equal(errnoOf(() => k.descriptor(d.fd)), 'EBADF', 'the fd is gone');
  t.equal(k.memory, 64, 'the area is still held by the thread');
  t.same(pcs(k, 1, 9), { accepted: 1, dropped: 0, ignored: 0, count: 1 }, 'and still traced');
  k.exitThread(1);
  t.equal(k.memory, 0, 'freed at exit');
  t.equal(d.area, null);
});

t.test('close when not enabled frees at once', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  k.close(d.fd);
  t.equal(k.memory, 0);
});

t.test('thread exit disables, and the fd is reusable by another thread (kcov_task_exit)', async (t) => {
  const k = kernel();
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  pcs(k, 1, 1, 2);
  k.exitThread(1);
  t.equal(d.state, 'INIT');
  t.equal(d.owner, null);
  t.equal(d.area?.count, 2, 'the records stay in the area');
  k.ioctl(d.fd, 'KCOV_ENABLE', 2, 0);
  t.same(pcs(k, 2, 3), { accepted: 1, dropped: 0, ignored: 0, count: 3 });
  t.equal(errnoOf(() => k.exitThread(1)), 'ESRCH', 'an exited thread is gone');
});

t.test('kernel teardown releases every byte to the budget', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 });
  const k = e.createKernel({ name: 'x', dialect: 'linux' });
  for (let i = 0; i < 3; i++) {
    const d = k.open();
    k.ioctl(d.fd, 'KCOV_INIT_TRACE', 10 + i, 128);
    k.ioctl(d.fd, 'KCOV_ENABLE', 10 + i, 0);
  }
  k.close(3);
  t.equal(e.budget.used, 3 * 1024);
  e.deleteKernel('x');
  t.equal(e.budget.used, 0);
});

t.test('a fork child inherits the common handle, not the kcov (kcov_task_init)', async (t) => {
  const k = kernel();
  const parent = k.ensureThread(1);
  parent.handle = [0x2a, 0];
  const { thread: child } = k.createThread(2, undefined, 1);
  t.same(child.handle, [0x2a, 0]);
  t.equal(child.kcov, null);
  t.equal(child.pid, 2, 'fork: a new process');
  const { thread: sibling } = k.createThread(3, 1, 1);
  t.equal(sibling.pid, 1, 'clone into the same process');
  t.equal(errnoOf(() => k.createThread(3, 7)), 'EEXIST', 'an existing tid in another process');
  t.equal(errnoOf(() => k.createThread(4, undefined, 99)), 'ESRCH', 'unknown parent');
});

t.test('without CONFIG_KCOV_ENABLE_COMPARISONS, KCOV_TRACE_CMP is ENOTSUPP (kcov_get_mode), after the EBUSY check', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 });
  const k = e.createKernel({ name: 'nocmp', dialect: 'linux', config: { CONFIG_KCOV_ENABLE_COMPARISONS: false } });
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 1, 1)), 'ENOTSUPP');
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_ENABLE', 1, 7)), 'EINVAL', 'an unknown mode is still EINVAL');
  const r = errnoOf(() => k.ioctl(d.fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 'cmp', area_size: 8, handles: [] }));
  t.equal(r, 'ENOTSUPP', 'KCOV_REMOTE_ENABLE decodes its trace mode the same way');
  t.equal(d.state, 'INIT', 'nothing changed');
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 0);
  t.equal(d.state, 'TRACE_PC', 'PC mode still works');
});

t.test('without CONFIG_KCOV_UNIQUE, KCOV_UNIQUE_ENABLE is ENOTSUPP before any other check', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 });
  const k = e.createKernel({ name: 'nounique', dialect: 'linux', config: { CONFIG_KCOV_UNIQUE: false } });
  const d = k.open();
  t.equal(errnoOf(() => k.ioctl(d.fd, 'KCOV_UNIQUE_ENABLE', 1, 4)), 'ENOTSUPP', 'even before KCOV_INIT_TRACE');
  t.equal(errnoOf(() => e.createKernel({ dialect: 'linux', config: { CONFIG_KASAN: true } })), 'EINVAL', 'unknown option');
  t.equal(errnoOf(() => e.createKernel({ dialect: 'openbsd', config: { CONFIG_KCOV_UNIQUE: false } })), 'EINVAL', 'not a BSD option');
  t.same(e.kernel('default').config, { CONFIG_KCOV_ENABLE_COMPARISONS: true, CONFIG_KCOV_UNIQUE: true }, 'defaults');
});
