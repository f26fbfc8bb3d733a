/**
 * The FreeBSD dialect against sys/kern/kern_kcov.c, driven through the engine.
 * Each test names the driver function whose rule it checks.
 */
import t from 'tap';
import { Engine } from '../../../src/engine/engine.js';
import { KcovError } from '../../../src/engine/errno.js';
import type { Kernel } from '../../../src/engine/kernel.js';
import { KCOV_MAXENTRIES } from '../../../src/engine/dialects/freebsd.js';

const MAIN = 100;
const OTHER = 200;

function kernel(maxEntries?: number, memoryLimit = 64 * 1024 * 1024): Kernel {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit });
  return e.createKernel({ name: 'fbsd', dialect: 'freebsd', maxEntries });
}

/** The errno a call fails with, or 'ok'. */
function errnoOf(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (e instanceof KcovError) return e.errno;
    throw e;
  }
}

function ioctl(k: Kernel, fd: number, cmd: string, tid: number, arg?: unknown): string {
  return errnoOf(() => k.ioctl(fd, cmd, tid, arg));
}

function state(k: Kernel, fd: number): string {
  return k.descriptor(fd).state;
}

/** A sized descriptor (READY). */
function ready(k: Kernel, entries = 512): number {
  const fd = k.open().fd;
  if (ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, entries) !== 'ok') throw new Error('KIOSETBUFSIZE failed');
  return fd;
}

t.test('kcov_open starts OPEN; kcov_ioctl KIOSETBUFSIZE moves to READY', async (t) => {
  const k = kernel();
  const fd = k.open().fd;
  t.equal(state(k, fd), 'OPEN');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 2), 'ok');
  t.equal(state(k, fd), 'READY');
  t.equal(k.descriptor(fd).area!.words, 2, 'the area holds exactly `entries` words');
});

t.test('kcov_ioctl KIOSETBUFSIZE: state != OPEN is EBUSY, checked before kcov_alloc looks at the size', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 512), 'EBUSY', 'second call');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 0), 'EBUSY', 'EBUSY wins over the invalid size');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 512), 'EBUSY', 'while RUNNING');
});

t.test('kcov_alloc: entries < 2 or > kern.kcov.max_entries is EINVAL and changes nothing', async (t) => {
  const k = kernel(1000);
  const fd = k.open().fd;
  for (const bad of [0, 1, 1001, -1, '0xffffffff']) {
    t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, bad), 'EINVAL', `entries ${String(bad)}`);
  }
  t.equal(state(k, fd), 'OPEN');
  t.equal(k.memory, 0);
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 1000), 'ok', 'max_entries itself is allowed');
});

t.test('kcov_ioctl KIOSETBUFSIZE reads *(u_int *)data: -1 is 0xffffffff, 2^32+2 is 2 after sys_ioctl truncates to int', async (t) => {
  const k = kernel(0x7fffffff);
  const a = k.open().fd;
  t.equal(ioctl(k, a, 'KIOSETBUFSIZE', MAIN, -1), 'EINVAL', '-1 reads as 4294967295 > max_entries');
  t.equal(ioctl(k, a, 'KIOSETBUFSIZE', MAIN, 0x100000002), 'ok');
  t.equal(k.descriptor(a).area!.words, 2);
  t.equal(ioctl(k, k.open().fd, 'KIOSETBUFSIZE', MAIN, { n: 2 }), 'EINVAL', 'a struct is not an int');
});

t.test('kcov_alloc: max_entries defaults to KCOV_MAXENTRIES (1 << 24) and can be set above or below it', async (t) => {
  t.equal(KCOV_MAXENTRIES, 16777216);
  const def = kernel();
  t.same(def.limits(), { minEntries: 2, maxEntries: 1 << 24 });
  t.equal(ioctl(def, def.open().fd, 'KIOSETBUFSIZE', MAIN, (1 << 24) + 1), 'EINVAL', 'one past the default');

  const above = kernel((1 << 24) + 8, 1 << 30);
  t.equal(above.limits().maxEntries, (1 << 24) + 8);
  t.equal(ioctl(above, above.open().fd, 'KIOSETBUFSIZE', MAIN, (1 << 24) + 8), 'ok', 'a raised sysctl admits more');

  const below = kernel(64);
  t.equal(ioctl(below, below.open().fd, 'KIOSETBUFSIZE', MAIN, 65), 'EINVAL');
  t.equal(ioctl(below, below.open().fd, 'KIOSETBUFSIZE', MAIN, 64), 'ok');

  t.equal(errnoOf(() => new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 })
    .createKernel({ dialect: 'freebsd', maxEntries: 1 })), 'EINVAL', 'a limit below the minimum of 2 is refused');
});

t.test('kcov_alloc: kva_alloc failure is ENOMEM (the memory budget) and leaves the fd OPEN', async (t) => {
  const k = kernel(undefined, 4096);
  const fd = k.open().fd;
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 513), 'ENOMEM', '513 words do not fit in 4096 bytes');
  t.equal(state(k, fd), 'OPEN');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 512), 'ok', 'a size that fits still works');
});

t.test('kcov_ioctl KIOENABLE: state != READY is EBUSY, before the thread and mode checks', async (t) => {
  const k = kernel();
  const fd = k.open().fd;
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'EBUSY', 'OPEN: no buffer yet');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 7), 'EBUSY', 'EBUSY wins over a bad mode');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 512), 'ok');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 0), 'ok');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 0), 'EBUSY', 'RUNNING, same thread');
  t.equal(ioctl(k, fd, 'KIOENABLE', OTHER, 0), 'EBUSY', 'RUNNING, another thread');
});

t.test('kcov_ioctl KIOENABLE: a thread that already has td_kcov_info is EINVAL, before the mode check', async (t) => {
  const k = kernel();
  const a = ready(k);
  const b = ready(k);
  t.equal(ioctl(k, a, 'KIOENABLE', MAIN, 'pc'), 'ok');
  t.equal(ioctl(k, b, 'KIOENABLE', MAIN, 'cmp'), 'EINVAL', 'second fd on the same thread');
  t.equal(ioctl(k, b, 'KIOENABLE', MAIN, 5), 'EINVAL', 'same errno with a bad mode too');
  t.equal(state(k, b), 'READY', 'the failed enable changed nothing');
  t.equal(ioctl(k, b, 'KIOENABLE', OTHER, 'cmp'), 'ok', 'another thread may enable it');
});

t.test('kcov_ioctl KIOENABLE: mode other than KCOV_MODE_TRACE_PC (0) / _CMP (1) is EINVAL', async (t) => {
  const k = kernel();
  const fd = ready(k);
  for (const bad of [-1, 2, 'none', 'PC', 0x100000002]) {
    t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, bad), 'EINVAL', `mode ${String(bad)}`);
  }
  t.equal(state(k, fd), 'READY');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 0x100000001), 'ok', 'only the low 32 bits reach *(int *)data: 1 is CMP');
  t.equal(k.descriptor(fd).mode, 'cmp');
});

t.test('kcov_ioctl KIODISABLE: not RUNNING, or not td_kcov_info of the caller, is EINVAL', async (t) => {
  const k = kernel();
  const fd = k.open().fd;
  t.equal(ioctl(k, fd, 'KIODISABLE', MAIN), 'EINVAL', 'OPEN');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 512), 'ok');
  t.equal(ioctl(k, fd, 'KIODISABLE', MAIN), 'EINVAL', 'READY');
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  t.equal(ioctl(k, fd, 'KIODISABLE', OTHER), 'EINVAL', '"Only the currently enabled thread may disable itself"');
  t.equal(state(k, fd), 'RUNNING');
  t.equal(ioctl(k, fd, 'KIODISABLE', MAIN), 'ok');
  t.equal(state(k, fd), 'READY');
  t.equal(k.descriptor(fd).owner, null);
  t.equal(k.ensureThread(MAIN).kcov, null);
  t.equal(ioctl(k, fd, 'KIODISABLE', MAIN), 'EINVAL', 'twice');
});

t.test('kcov_ioctl default: an unknown request is EINVAL, by name or number; the numbers are the header\'s', async (t) => {
  const k = kernel();
  const fd = k.open().fd;
  t.equal(ioctl(k, fd, 'KCOV_INIT_TRACE', MAIN, 64), 'EINVAL');
  t.equal(ioctl(k, fd, '0x80084b01', MAIN, 64), 'EINVAL', "OpenBSD's KIOSETBUFSIZE number");
  t.equal(ioctl(k, fd, '0x20046304', MAIN, 64), 'ok', '_IOWINT(\'c\', 4) is KIOSETBUFSIZE');
  t.equal(ioctl(k, fd, String(0x20046302), MAIN, 1), 'ok', '_IOWINT(\'c\', 2) is KIOENABLE, decimal');
  t.equal(ioctl(k, fd, '0x20006303', MAIN), 'ok', '_IO(\'c\', 3) is KIODISABLE');
});

t.test('trace_pc: `index + 2 > entries` drops; capacity is entries - 1', async (t) => {
  const k = kernel();
  const fd = ready(k, 5);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  let r = k.eventsJson(MAIN, { pcs: [1, 2, 3] });
  t.same(r, { accepted: 3, dropped: 0, ignored: 0, count: 3 });
  r = k.eventsJson(MAIN, { pcs: [4, 5, 6] });
  t.same(r, { accepted: 1, dropped: 2, ignored: 0, count: 4 }, 'index 3: 5 > 5 is false, stored; index 4: 6 > 5 drops');
  const a = k.descriptor(fd).area!;
  t.same([a.wordLo(1), a.wordLo(2), a.wordLo(3), a.wordLo(4)], [1, 2, 3, 4]);
  const two = ready(k, 2);
  t.equal(ioctl(k, two, 'KIOENABLE', OTHER, 'pc'), 'ok');
  t.same(k.eventsJson(OTHER, { pcs: [9, 9] }), { accepted: 1, dropped: 1, ignored: 0, count: 1 }, 'two entries hold one PC');
});

t.test('trace_cmp: `index * 4 + 4 + 1 > entries` drops; capacity is floor((entries - 1) / 4)', async (t) => {
  const k = kernel();
  const cmp = { size: 8, const: false, arg1: 1, arg2: 2, pc: 3 };
  const fd = ready(k, 9);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'cmp'), 'ok');
  t.same(k.eventsJson(MAIN, { cmps: [cmp, cmp, cmp] }), { accepted: 2, dropped: 1, ignored: 0, count: 2 },
    'index 1: 9 > 9 is false, stored; index 2: 13 > 9 drops');
  const eight = ready(k, 8);
  t.equal(ioctl(k, eight, 'KIOENABLE', OTHER, 'cmp'), 'ok');
  t.same(k.eventsJson(OTHER, { cmps: [cmp, cmp] }), { accepted: 1, dropped: 1, ignored: 0, count: 1 }, 'index 1: 9 > 8 drops');
  const tid = 300;
  const four = ready(k, 4);
  t.equal(ioctl(k, four, 'KIOENABLE', tid, 'cmp'), 'ok');
  t.same(k.eventsJson(tid, { cmps: [cmp] }), { accepted: 0, dropped: 1, ignored: 0, count: 0 }, '4 entries hold no record: 5 > 4');
});

t.test('trace_pc / trace_cmp: records of the other mode are not traced', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'cmp'), 'ok');
  const r = k.eventsJson(MAIN, { pcs: [1, 2] });
  t.equal(r.accepted, 0);
  t.equal(r.ignored, 2);
  t.equal(k.descriptor(fd).area!.count, 0);
});

t.test('kcov_close + kcov_mmap_cleanup: closing a READY fd frees the buffer at once', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(k.memory, 512 * 8);
  k.close(fd);
  t.equal(k.memory, 0);
  t.equal(errnoOf(() => k.descriptor(fd)), 'EBADF');
});

t.test('kcov_close while RUNNING: the fd goes, the info is DYING, stops recording, freed by kcov_thread_dtor', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  const d = k.descriptor(fd);
  t.equal(errnoOf(() => k.close(fd)), 'ok', 'close(2) releases the fd even though kcov_close says EBUSY');
  t.equal(errnoOf(() => k.descriptor(fd)), 'EBADF');
  t.equal(d.state, 'DYING');
  t.equal(d.closed, true);
  t.equal(k.memory, 512 * 8, 'still held by the thread');
  const r = k.eventsJson(MAIN, { pcs: [1] });
  t.equal(r.accepted, 0, 'get_kinfo: DYING does not record');
  t.equal(d.area!.count, 0);
  t.equal(ioctl(k, ready(k), 'KIOENABLE', MAIN, 'pc'), 'EINVAL', 'td_kcov_info still points at the dying info');
  k.exitThread(MAIN);
  t.equal(k.memory, 512 * 8, 'only the second, still open, buffer is left');
  t.equal(d.area, null, 'kcov_thread_dtor freed the dying buffer');
});

t.test('kcov_thread_dtor: a RUNNING fd goes back to READY and keeps its records (ATF kcov_enable_multi_thread)', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOENABLE', 11, 'pc'), 'ok');
  k.eventsJson(11, { pcs: [5, 6] });
  k.exitThread(11);
  t.equal(state(k, fd), 'READY');
  t.equal(k.descriptor(fd).owner, null);
  t.equal(k.descriptor(fd).area!.count, 2, 'the buffer is untouched');
  t.equal(ioctl(k, fd, 'KIOENABLE', 12, 'cmp'), 'ok', 'another thread enables the same fd');
  t.equal(k.descriptor(fd).mode, 'cmp');
});

t.test('kcov_thread_dtor: a thread without td_kcov_info changes nothing', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  k.ensureThread(OTHER);
  k.exitThread(OTHER);
  t.equal(state(k, fd), 'RUNNING');
});

t.test('fork: td_kcov_info is not inherited', async (t) => {
  const k = kernel();
  const fd = ready(k);
  t.equal(ioctl(k, fd, 'KIOENABLE', MAIN, 'pc'), 'ok');
  const { thread } = k.createThread(OTHER, undefined, MAIN);
  t.equal(thread.kcov, null);
  t.equal(k.eventsJson(OTHER, { pcs: [1] }).accepted, 0);
});

t.test('kcov_mmap_single: before KIOSETBUFSIZE (kvaddr == 0) the mapping is EINVAL', async (t) => {
  const k = kernel();
  const fd = k.open().fd;
  t.equal(errnoOf(() => k.mapping(k.descriptor(fd))), 'EINVAL');
  t.equal(ioctl(k, fd, 'KIOSETBUFSIZE', MAIN, 1024), 'ok');
  t.equal(k.mapping(k.descriptor(fd)).area.words, 1024);
});

t.test('kcov_alloc bufsize and kcov_mmap_single: only entries * 8 that fill whole pages can be mapped', async (t) => {
  const k = kernel();
  const small = k.descriptor(ready(k, 2)).extra();
  t.same(small, { bufsize: 4096, mmappable: false }, 'KIOSETBUFSIZE 2 works but no mmap length rounds to 16 bytes');
  t.same(k.descriptor(ready(k, 1024)).extra(), { bufsize: 8192, mmappable: true });
  t.same(k.descriptor(k.open().fd).extra(), { bufsize: null, mmappable: false });
});

t.test('remote coverage does not exist on FreeBSD: EOPNOTSUPP', async (t) => {
  const k = kernel();
  t.equal(errnoOf(() => k.remotes.register('0:1')), 'EOPNOTSUPP');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(MAIN, '0:1')), 'EOPNOTSUPP');
  t.same(k.remotes.view(), []);
});

t.test('deleting the kernel frees RUNNING, DYING and READY buffers (ATF kcov_enable_no_disable_no_close)', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 });
  const k = e.createKernel({ name: 'x', dialect: 'freebsd' });
  const a = ready(k);
  const b = ready(k);
  ready(k);
  t.equal(ioctl(k, a, 'KIOENABLE', 1, 'pc'), 'ok');
  t.equal(ioctl(k, b, 'KIOENABLE', 2, 'pc'), 'ok');
  k.close(b);
  t.equal(e.budget.used, 3 * 512 * 8);
  e.deleteKernel('x');
  t.equal(e.budget.used, 0);
});
