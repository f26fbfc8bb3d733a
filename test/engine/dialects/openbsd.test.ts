/**
 * OpenBSD sys/dev/kcov.c v1.51, driven through the engine directly. Every test
 * names the driver function whose rule it checks.
 */
import t from 'tap';
import { Engine } from '../../../src/engine/engine.js';
import { KcovError, WouldBlock } from '../../../src/engine/errno.js';
import { KCOV_BUF_MAX_NMEMB, openbsd, type ObsdDescriptor, type ObsdTypes } from '../../../src/engine/dialects/openbsd.js';
import type { Kernel as AnyKernel } from '../../../src/engine/kernel.js';
import type { Segment } from '../../../src/engine/events.js';
import { errnoOf, invariantsAfterEach, typedKernel } from '../../helpers.js';

type Kernel = AnyKernel<ObsdTypes>;

const checked = invariantsAfterEach(t);

function setup(opts: { maxEntries?: number; memoryLimit?: number; cpuAreaWords?: number } = {}): { e: Engine; k: Kernel } {
  const e = checked(new Engine({ dialect: 'linux', ncpus: 2, memoryLimit: opts.memoryLimit ?? 64 * 1024 * 1024, cpuAreaWords: opts.cpuAreaWords }));
  const k = typedKernel(e.createKernel({ name: 'obsd', dialect: 'openbsd', maxEntries: opts.maxEntries }), openbsd);
  return { e, k };
}


function kd(k: Kernel, fd: number): ObsdDescriptor {
  return k.descriptor(fd) as ObsdDescriptor;
}

/** Open, KIOSETBUFSIZE(n) as thread `tid`. */
function ready(k: Kernel, n: number, tid = 1): number {
  const fd = k.open().fd;
  k.ioctl(fd, 'KIOSETBUFSIZE', tid, n);
  return fd;
}

function pcs(k: Kernel, tid: number, ...values: number[]) {
  return k.eventsJson(tid, { pcs: values });
}

function seg(...values: number[]): () => Segment[] {
  const w = new Uint32Array(values.length * 2);
  values.forEach((v, i) => { w[i * 2] = v; });
  return () => [{ kind: 'pc', records: values.length, chunks: [new Uint8Array(w.buffer)] }];
}

function range(a: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => a + i);
}

t.test('kcov.h v1.9: the four ioctls by name and by request number', async (t) => {
  const { k } = setup();
  const fd = k.open().fd;
  t.equal(k.ioctl(fd, '0x80084b01', 1, 16).ret, 0, 'KIOSETBUFSIZE = 0x80084b01');
  t.equal(kd(k, fd).state, 'READY');
  k.ioctl(fd, String(0x80044b02), 1, 1);
  t.equal(kd(k, fd).state, 'TRACE', 'KIOENABLE = 0x80044b02 (decimal works too)');
  k.ioctl(fd, '0x20004b03', 1, undefined);
  t.equal(kd(k, fd).state, 'READY', 'KIODISABLE = 0x20004b03');
  k.ioctl(fd, '0x80084b04', 1, { subsystem: 0, id: 0 });
  t.equal(kd(k, fd).kr?.key, '0:1', 'KIOREMOTEATTACH = 0x80084b04 (size field 8: sizeof pointer)');
});

t.test('OpenBSD kcov.c kcovioctl: an unknown request is ENOTTY (v1.7 said EINVAL)', async (t) => {
  const { k } = setup();
  const fd = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 16)), 'ENOTTY', 'a Linux name');
  t.equal(errnoOf(() => k.ioctl(fd, '0x20004b02', 1, undefined)), 'ENOTTY', 'the old v1.2 KIOENABLE _IO(K,2)');
  t.equal(errnoOf(() => k.ioctl(fd, '0x20004b05', 1, undefined)), 'ENOTTY', 'an unused number');
});

t.test('OpenBSD kcov.c kd_init: KIOSETBUFSIZE errno order and limits', async (t) => {
  const { k } = setup();
  const fd = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, 0)), 'EINVAL', 'nmemb == 0');
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, KCOV_BUF_MAX_NMEMB + 1)), 'EINVAL', 'nmemb > KCOV_BUF_MAX_NMEMB');
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, null)), 'EFAULT', 'NULL argument pointer: copyin fails in sys_ioctl');
  t.equal(kd(k, fd).state, 'NONE', 'failures change nothing');
  t.equal(k.memory, 0, 'nothing allocated');
  k.ioctl(fd, 'KIOSETBUFSIZE', 1, KCOV_BUF_MAX_NMEMB);
  t.equal(kd(k, fd).area!.words, KCOV_BUF_MAX_NMEMB, '512Ki entries is the largest');
  t.equal(kd(k, fd).nmemb, KCOV_BUF_MAX_NMEMB - 1, 'kd_nmemb = nmemb - 1');
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, 16)), 'EBUSY', 'state != NONE: set once');
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, 0)), 'EBUSY', 'EBUSY is checked before the range');
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, 16)), 'EBUSY', 'EBUSY while tracing');
  const one = k.open().fd;
  t.equal(k.ioctl(one, 'KIOSETBUFSIZE', 1, 1).ret, 0, 'one entry is accepted');
});

t.test('OpenBSD kcov.c kd_init: a kernel max_entries lowers the limit; km_alloc failure is ENOMEM', async (t) => {
  const { k } = setup({ maxEntries: 100 });
  t.same(k.limits(), { minEntries: 1, maxEntries: 100 });
  const fd = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOSETBUFSIZE', 1, 101)), 'EINVAL');
  t.equal(k.ioctl(fd, 'KIOSETBUFSIZE', 1, 100).ret, 0);
  const small = setup({ memoryLimit: 1024 }).k;
  const fd2 = small.open().fd;
  t.equal(errnoOf(() => small.ioctl(fd2, 'KIOSETBUFSIZE', 1, 1000)), 'ENOMEM');
  t.equal((small.descriptor(fd2) as ObsdDescriptor).state, 'NONE', 'still NONE after ENOMEM');
});

t.test('OpenBSD kcov.c kcovioctl KIOENABLE: EBUSY before ENXIO before EINVAL', async (t) => {
  const { k } = setup();
  const a = ready(k, 16);
  const none = k.open().fd;
  k.ioctl(a, 'KIOENABLE', 1, 1);
  t.equal(errnoOf(() => k.ioctl(none, 'KIOENABLE', 1, 1)), 'EBUSY', 'p_kd != NULL wins over a descriptor in NONE');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOENABLE', 1, 7)), 'EBUSY', 'and over a bad mode');
  t.equal(errnoOf(() => k.ioctl(none, 'KIOENABLE', 2, 1)), 'ENXIO', 'no buffer: state != READY');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOENABLE', 2, 1)), 'ENXIO', 'already TRACE for another thread');
  t.equal(errnoOf(() => k.ioctl(none, 'KIOENABLE', 2, 0)), 'ENXIO', 'ENXIO before the mode check');
  const b = ready(k, 16, 2);
  for (const bad of [0, 3, -1, 'none']) {
    t.equal(errnoOf(() => k.ioctl(b, 'KIOENABLE', 2, bad)), 'EINVAL', `mode ${JSON.stringify(bad)}`);
  }
  t.equal(errnoOf(() => k.ioctl(b, 'KIOENABLE', 2, null)), 'EFAULT', 'NULL mode pointer');
  t.equal(kd(k, b).state, 'READY', 'nothing changed');
  k.ioctl(b, 'KIOENABLE', 2, 'cmp');
  t.equal(kd(k, b).mode, 'cmp', '"cmp" is KCOV_MODE_TRACE_CMP');
  t.equal(kd(k, b).owner?.tid, 2, 'p->p_kd = kd');
  t.equal(k.ensureThread(2).kcov?.fd, b);
});

t.test('OpenBSD kcov.c kcovioctl KIODISABLE: EPERM before ENXIO; only the enabled thread', async (t) => {
  const { k } = setup();
  const none = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(none, 'KIODISABLE', 1, undefined)), 'EPERM', 'not enabled, no remote: EPERM, not ENXIO');
  const a = ready(k, 16);
  k.ioctl(a, 'KIOENABLE', 1, 'pc');
  t.equal(errnoOf(() => k.ioctl(a, 'KIODISABLE', 2, undefined)), 'EPERM', 'another thread');
  t.equal(k.ioctl(a, 'KIODISABLE', 1, undefined).ret, 0);
  t.equal(kd(k, a).state, 'READY');
  t.equal(kd(k, a).mode, null, 'KCOV_MODE_NONE');
  t.equal(k.ensureThread(1).kcov, null, 'p_kd cleared');
  t.equal(errnoOf(() => k.ioctl(a, 'KIODISABLE', 1, undefined)), 'EPERM', 'twice: p_kd is gone, so EPERM again');
  const r = ready(k, 16, 3);
  k.ioctl(r, 'KIOREMOTEATTACH', 3, { subsystem: 0 });
  t.equal(errnoOf(() => k.ioctl(r, 'KIODISABLE', 4, undefined)), 'ENXIO', 'with a remote any thread passes EPERM; READY is ENXIO');
});

t.test('OpenBSD kcov.c kd_claim: capacity is floor((nmemb - 1) / stride), the Area rule', async (t) => {
  const { k } = setup();
  for (const nmemb of [1, 2, 5, 8, 9, 13]) {
    const fd = ready(k, nmemb, 10 + nmemb);
    const tid = 10 + nmemb;
    k.ioctl(fd, 'KIOENABLE', tid, 'pc');
    const kdNmemb = nmemb - 1;
    // kd_claim(kd, 1, 1) fails when 1 * (idx + 1) > kd_nmemb.
    let fit = 0;
    while (1 * (fit + 1) <= kdNmemb) fit++;
    const r = pcs(k, tid, ...range(1, fit + 2));
    t.equal(r.accepted, fit, `pc: ${nmemb} entries hold ${fit}`);
    t.equal(r.dropped, 2, 'the rest is dropped');
    t.equal(kd(k, fd).area!.count, fit, 'count stops at capacity');
    k.ioctl(fd, 'KIODISABLE', tid, undefined);
    kd(k, fd).area!.count = 0;
    k.ioctl(fd, 'KIOENABLE', tid, 'cmp');
    let cfit = 0;
    while (4 * (cfit + 1) <= kdNmemb) cfit++;
    const cmps = range(0, cfit + 1).map((i) => ({ size: 8, arg1: i, arg2: 0, pc: 1 }));
    const c = k.eventsJson(tid, { cmps });
    t.equal(c.accepted, cfit, `cmp: ${nmemb} entries hold ${cfit} records of 4 words`);
    t.equal(c.dropped, 1);
    t.equal(kd(k, fd).area!.capacity(4), cfit, 'Area.capacity agrees');
  }
});

t.test('OpenBSD kcov.c kd_curproc: records of the other mode, and of an untraced thread, are not traced', async (t) => {
  const { k } = setup();
  const fd = ready(k, 64);
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  const r = k.eventsJson(1, { cmps: [{ size: 4, arg1: 1, arg2: 2, pc: 3 }], pcs: [5] });
  t.equal(r.ignored, 1, 'a CMP record in PC mode');
  t.equal(r.accepted, 1);
  t.equal(pcs(k, 2, 1, 2).ignored, 2, 'thread 2 has no p_kd');
});

t.test('OpenBSD kcov.c kcovclose: closing while a thread traces makes it DYING, freed by kcov_exit', async (t) => {
  const { k } = setup();
  const fd = ready(k, 512);
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  pcs(k, 1, 1, 2, 3);
  const held = k.memory;
  k.close(fd);
  t.equal(errnoOf(() => k.descriptor(fd)), 'EBADF', 'the fd is gone (removed from kd_list)');
  t.equal(errnoOf(() => k.close(fd)), 'EBADF', 'closing it again: EBADF (regress test_dying)');
  const dying = k.ensureThread(1).kcov as ObsdDescriptor;
  t.equal(dying.state, 'DYING');
  t.equal(dying.mode, null, 'kd_mode NONE: tracing stops at once');
  t.equal(pcs(k, 1, 4).ignored, 1, 'events of the owner are no longer traced');
  t.equal(k.memory, held, 'the buffer is still held');
  t.equal(errnoOf(() => k.ioctl(ready(k, 16, 2), 'KIOENABLE', 1, 1)), 'EBUSY', 'the owner still has p_kd set');
  k.exitThread(1);
  t.equal(k.memory, 16 * 8, 'kcov_exit freed the DYING buffer (only the new fd remains)');
});

t.test('OpenBSD kcov.c kcovclose: a descriptor nobody traces is freed at once', async (t) => {
  const { k } = setup();
  const fd = ready(k, 512);
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.ioctl(fd, 'KIODISABLE', 1, undefined);
  k.close(fd);
  t.equal(k.memory, 0, 'READY: kd_free');
  const none = k.open().fd;
  k.close(none);
  t.equal(k.descriptors.size, 0);
});

t.test('OpenBSD kcov.c kcov_exit: thread exit returns an enabled descriptor to READY (regress test_fork)', async (t) => {
  const { k } = setup();
  const fd = ready(k, 64);
  k.createThread(2, 2, 1);
  t.equal(k.ensureThread(2).kcov, null, 'fork: the child has no p_kd');
  k.ioctl(fd, 'KIOENABLE', 2, 'pc');
  pcs(k, 2, 1, 2);
  k.exitThread(2);
  t.equal(kd(k, fd).state, 'READY', 'child exit: READY');
  t.equal(kd(k, fd).owner, null);
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  pcs(k, 1, 3);
  k.ioctl(fd, 'KIODISABLE', 1, undefined);
  t.equal(kd(k, fd).area!.count, 3, 'the parent reuses it; coverage accumulates');
});

t.test('OpenBSD kcov.c kcovioctl KIODISABLE: p->p_kd = NULL is unconditional', async (t) => {
  // A thread that disables a remote descriptor also loses its own binding.
  const { k } = setup();
  const own = ready(k, 16);
  k.ioctl(own, 'KIOENABLE', 1, 'pc');
  const r = ready(k, 16, 5);
  k.ioctl(r, 'KIOREMOTEATTACH', 5, { subsystem: 0 });
  k.ioctl(r, 'KIOENABLE', 5, 'pc');
  k.ioctl(r, 'KIODISABLE', 1, undefined);
  t.equal(k.ensureThread(1).kcov, null, 'thread 1 no longer traces into its own fd');
  t.equal(kd(k, own).state, 'TRACE', 'which stays TRACE');
  t.equal(pcs(k, 1, 1).ignored, 1);
  t.equal(errnoOf(() => k.ioctl(own, 'KIODISABLE', 1, undefined)), 'EPERM', 'and cannot be disabled any more');
  k.close(own);
  t.equal(k.memory, 16 * 8, 'closing it frees it (the kernel would leak it: no thread would ever free it)');
});

t.test('OpenBSD kcov.c kcov_remote_attach: errno order and the per-process key', async (t) => {
  const { k } = setup();
  const none = k.open().fd;
  t.equal(errnoOf(() => k.ioctl(none, 'KIOREMOTEATTACH', 1, { subsystem: 1 })), 'ENXIO', 'state != READY before the subsystem');
  const a = ready(k, 16);
  t.equal(errnoOf(() => k.ioctl(a, 'KIOREMOTEATTACH', 1, { subsystem: 1, id: 0 })), 'EINVAL', 'only KCOV_REMOTE_COMMON');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOREMOTEATTACH', 1, null)), 'EFAULT', 'NULL struct pointer');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOREMOTEATTACH', 1, 3)), 'EFAULT', 'not a struct');
  t.equal(k.remotes.count, 0, 'nothing registered by the failures');
  k.ioctl(a, 'KIOREMOTEATTACH', 1, { subsystem: 0, id: 99 });
  t.equal(kd(k, a).kr?.key, '0:1', 'keyed by (COMMON, process); id ignored');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOREMOTEATTACH', 1, { subsystem: 0 })), 'EBUSY', 'same fd again: the process has one');
  k.createThread(2, 1);
  const b = ready(k, 16, 2);
  t.equal(errnoOf(() => k.ioctl(b, 'KIOREMOTEATTACH', 2, { subsystem: 0 })), 'EBUSY', 'another thread of the same process');
  k.createThread(3, 3);
  const c = ready(k, 16, 3);
  t.equal(k.ioctl(c, 'KIOREMOTEATTACH', 3, { subsystem: 0 }).ret, 0, 'another process');
  k.ioctl(a, 'KIOENABLE', 1, 'pc');
  t.equal(errnoOf(() => k.ioctl(a, 'KIOREMOTEATTACH', 1, { subsystem: 0 })), 'ENXIO', 'after enable: TRACE');
});

t.test('OpenBSD kcov.c kcov_remote_register_locked: a live registration of the key makes KIOREMOTEATTACH EBUSY', async (t) => {
  const { k } = setup();
  t.equal(k.remotes.register('0:7'), true, 'kernel side registers (COMMON, 7): kr_state NONE');
  t.equal(k.remotes.register({ subsystem: 0, id: 7 }), false, 'again: nothing happens');
  k.createThread(7, 7);
  const fd = ready(k, 16, 7);
  t.equal(errnoOf(() => k.ioctl(fd, 'KIOREMOTEATTACH', 7, { subsystem: 0 })), 'EBUSY');
  k.remotes.unregister('0:7');
  t.equal(k.ioctl(fd, 'KIOREMOTEATTACH', 7, { subsystem: 0 }).ret, 0, 'free again after kcov_remote_unregister');
  t.equal(errnoOf(() => k.remotes.unregister('0:8')), 'ENOENT', 'an unknown remote (the kernel ignores it; the API says so)');
  t.equal(errnoOf(() => k.remotes.key('7')), 'EINVAL', 'not subsystem:id');
  t.equal(errnoOf(() => k.remotes.key({ handle: '0x1' })), 'EINVAL', 'a Linux handle');
  t.equal(k.remotes.key('0x10:0x20'), '16:32', 'canonical decimal key');
});

t.test('OpenBSD kcov.c KIOENABLE: with a remote attached the thread is not bound; task sections write into the area', async (t) => {
  const { k } = setup();
  const fd = ready(k, 64);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  t.equal(kd(k, fd).owner, null, '"Remote coverage is mutually exclusive"');
  t.equal(k.ensureThread(1).kcov, null);
  t.equal(pcs(k, 1, 1, 2).ignored, 2, "the caller's own events are not traced");
  // A taskq thread runs a task queued by process 1.
  const r = k.remotes.oneShot('0:1', { context: 'task', tid: 50 }, seg(10, 11, 12));
  t.equal(r.accepted, 3);
  t.equal(r.count, 3, 'straight into the attached area');
  t.equal(k.ensureThread(50).kcov, null, 'kcov_remote_leave cleared p_kd');
  t.equal(k.state.remotes.get('0:1')!.nsections, 0);
  k.remotes.enterThreadSection(51, { subsystem: 0, id: 1 });
  t.equal(k.ensureThread(51).kcov?.fd, fd, 'kcov_remote_enter: p->p_kd = kr->kr_kd');
  t.equal(errnoOf(() => k.ioctl(ready(k, 8, 51), 'KIOENABLE', 51, 1)), 'EBUSY', 'a thread in a section has p_kd');
  t.equal(pcs(k, 51, 13).count, 4);
  k.remotes.leaveThreadSection(51);
  t.equal(pcs(k, 51, 14).ignored, 1, 'after leave: not traced');
  t.equal(errnoOf(() => k.remotes.oneShot('0:1', { context: 'task', tid: 1 }, seg(1))), null);
  const own = ready(k, 8, 60);
  k.ioctl(own, 'KIOENABLE', 60, 'pc');
  t.equal(errnoOf(() => k.remotes.enterThreadSection(60, '0:1')), 'EBUSY', 'KASSERT(p->p_kd == NULL): a tracing thread');
});

t.test('OpenBSD kcov.c kcov_remote_enter: no section unless the remote is READY and its kd TRACE', async (t) => {
  const { k } = setup();
  k.remotes.register('5:1');
  t.equal(k.remotes.oneShot('5:1', { context: 'task', tid: 9 }, seg(1)).ignored, 1, 'registered, never attached: kr_state NONE');
  t.equal(k.remotes.oneShot('0:1', { context: 'task', tid: 9 }, seg(1)).ignored, 1, 'not registered: kr_lookup NULL');
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  t.equal(k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 0 }, seg(1)).ignored, 1, 'kd READY, not TRACE');
  t.equal(k.remotes.enterThreadSection(9, '0:1').section, null, 'a thread section that did not open');
  k.remotes.leaveThreadSection(9);
  k.ioctl(fd, 'KIOENABLE', 1, 'cmp');
  const r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 1 }, seg(1, 2));
  t.equal(r.ignored, 2, 'PC records in a CMP section: kd_curproc mode mismatch');
});

t.test('OpenBSD kcov.c kd_copy/kd_claim: an interrupt section is copied whole or not at all', async (t) => {
  const { k } = setup({ cpuAreaWords: 64 });
  const fd = ready(k, 6); // kd_nmemb 5: five PCs fit
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  const area = kd(k, fd).area!;
  let r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 0 }, seg(1, 2, 3));
  t.same([r.accepted, r.dropped, area.count], [3, 0, 3], 'three fit: copied');
  t.equal(k.cpus[0]!.area!.words, 64, 'the CPU has its own area');
  t.equal(k.cpus[0]!.area!.count, 3, 'which keeps its count after leave');
  r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 0 }, seg(4, 5, 6));
  t.same([r.accepted, r.dropped, area.count], [0, 3, 3], '3 more do not fit (1 * (3 + 3) > 5): none copied');
  t.equal(k.cpus[0]!.area!.count, 3, 'the CPU area was reset on enter and held the 3');
  r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 1 }, seg(4, 5));
  t.same([r.accepted, r.dropped, area.count], [2, 0, 5], 'exactly to the boundary (1 * (3 + 2) == 5): copied');
  t.same([area.wordLo(4), area.wordLo(5)], [4, 5], 'records land after the existing ones');
  r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 1 }, seg(7));
  t.same([r.accepted, r.dropped, area.count], [0, 1, 5], 'full: one record is not copied');
  t.equal(k.state.remotes.get('0:1')!.nsections, 0);
  t.equal(k.cpus[1]!.section, null);
});

t.test('OpenBSD kcov.c kd_copy: CMP interrupt sections claim stride 4', async (t) => {
  const { k } = setup({ cpuAreaWords: 64 });
  const fd = ready(k, 9); // kd_nmemb 8: two CMP records
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 2);
  const cmp = (n: number) => () => [{ kind: 'cmp' as const, records: n, chunks: [new Uint8Array(n * 32).fill(1)] }];
  let r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 0 }, cmp(3));
  t.same([r.accepted, r.dropped, kd(k, fd).area!.count], [0, 3, 0], '4 * (0 + 3) > 8: nothing');
  r = k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 0 }, cmp(2));
  t.same([r.accepted, r.dropped, kd(k, fd).area!.count], [2, 0, 2], '4 * (0 + 2) == 8: both');
});

t.test('OpenBSD kcov.c kcovattach: per-CPU areas are KCOV_BUF_MAX_NMEMB entries by default', async (t) => {
  const { k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.remotes.oneShot('0:1', { context: 'interrupt', cpu: 1 }, seg(1));
  t.equal(k.cpus[1]!.area!.words, KCOV_BUF_MAX_NMEMB);
  t.equal(k.cpus[0]!.area, null, 'allocated on first use');
});

t.test('OpenBSD kcov.c kr_barrier: KIODISABLE, close and unregister refuse while a task section is open', async (t) => {
  const { k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.remotes.enterThreadSection(40, '0:1');
  let err: unknown;
  try {
    k.ioctl(fd, 'KIODISABLE', 1, undefined);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof WouldBlock, 'KIODISABLE would sleep in kr_barrier');
  t.equal((err as KcovError).errno, 'ETIMEDOUT', 'uncaught it reads as ETIMEDOUT');
  t.match((err as Error).message, /thread 40/, 'names the thread holding the section');
  t.equal(kd(k, fd).state, 'TRACE', 'nothing changed');
  t.equal(errnoOf(() => k.close(fd)), 'ETIMEDOUT', 'close: kd_free -> kr_free -> kr_barrier');
  t.equal(k.descriptor(fd).fd, fd, 'the fd stays open');
  t.equal(errnoOf(() => k.remotes.unregister('0:1')), 'ETIMEDOUT', 'kcov_remote_unregister -> kr_free');
  t.equal(k.remotes.count, 1);
  t.equal(pcs(k, 40, 7).accepted, 1, 'the section still records');
  k.remotes.leaveThreadSection(40);
  t.equal(k.ioctl(fd, 'KIODISABLE', 1, undefined).ret, 0, 'after leave: disabled');
});

t.test('OpenBSD kcov.c kcovclose: a descriptor with a remote attached is freed at once (regress test_remote_close)', async (t) => {
  const { k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.close(fd);
  t.equal(k.memory, 0, 'kd_free, not DYING');
  t.equal(k.remotes.count, 0, 'kcov_remote_detach -> kr_free: the COMMON remote is gone');
  const again = ready(k, 16);
  t.equal(k.ioctl(again, 'KIOREMOTEATTACH', 1, { subsystem: 0 }).ret, 0, 'the process may attach again');
});

t.test('OpenBSD kcov.c kr_free: unregistering an attached remote detaches its descriptor', async (t) => {
  const { k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.remotes.unregister('0:1');
  t.equal(kd(k, fd).kr, null, 'kd_kr = NULL');
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  t.equal(kd(k, fd).owner?.tid, 1, 'now KIOENABLE binds the thread');
});

t.test('thread exit inside a task section leaves it first (kcov_remote_leave, then kcov_exit)', async (t) => {
  const { k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.remotes.enterThreadSection(40, '0:1');
  k.exitThread(40);
  t.equal(kd(k, fd).state, 'TRACE', 'the remote descriptor is not disabled by the section thread');
  t.equal(k.state.remotes.get('0:1')!.nsections, 0);
  t.equal(k.ioctl(fd, 'KIODISABLE', 1, undefined).ret, 0);
});

t.test('OpenBSD kcovmmap via uvm_mmapfile: EINVAL before the buffer and for unmappable last pages', async (t) => {
  const { k } = setup();
  const fd = k.open().fd;
  t.equal(errnoOf(() => k.mapping(k.descriptor(fd))), 'EINVAL', 'no buffer: kd_nmemb 0');
  k.ioctl(fd, 'KIOSETBUFSIZE', 1, 1);
  t.equal(errnoOf(() => k.mapping(k.descriptor(fd))), 'EINVAL', 'nmemb 1: offset 0 >= kd_nmemb * 8 = 0');
  const f513 = ready(k, 513);
  t.equal(errnoOf(() => k.mapping(k.descriptor(f513))), 'EINVAL', 'nmemb 513: the page at 4096 >= 512 * 8');
  const f512 = ready(k, 512);
  t.equal(k.mapping(k.descriptor(f512)).area.words, 512, 'nmemb 512: one page, mappable');
  const f514 = ready(k, 514);
  t.equal(k.mapping(k.descriptor(f514)).area.words, 514);
});

t.test('kernel teardown ends open sections first', async (t) => {
  const { e, k } = setup();
  const fd = ready(k, 16);
  k.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  k.ioctl(fd, 'KIOENABLE', 1, 'pc');
  k.remotes.enterThreadSection(40, '0:1');
  e.deleteKernel('obsd');
  t.equal(e.budget.used, 0, 'everything released');
});

t.test('KIOREMOTEATTACH reads subsystem as an int: only the low 32 bits reach kcov_remote_attach', async (t) => {
  const k = new Engine({ dialect: 'openbsd', ncpus: 1, memoryLimit: 1 << 30 }).kernel('default');
  const a = k.open();
  k.ioctl(a.fd, 'KIOSETBUFSIZE', 1, 64);
  t.equal(errnoOf(() => k.ioctl(a.fd, 'KIOREMOTEATTACH', 1, { subsystem: '0xffffffff00000005', id: 0 })), 'EINVAL', 'low bits 5: not KCOV_REMOTE_COMMON');
  k.ioctl(a.fd, 'KIOREMOTEATTACH', 1, { subsystem: '0x100000000', id: 0 });
  t.ok((k.descriptor(a.fd) as ObsdDescriptor).kr !== null, 'low bits 0: KCOV_REMOTE_COMMON, attached');
});
