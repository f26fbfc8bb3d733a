/**
 * OpenBSD kcov over HTTP: the regress scenarios of regress/sys/dev/kcov/kcov.c
 * v1.18 that have an HTTP meaning (exec and fdsend have none: no exec route,
 * no fd passing), the errno paths of kcov.c v1.51, and the bounded wait of
 * KIODISABLE in kr_barrier.
 */
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { Client, expectProblem, json, makeApp, pcs, cmps } from '#test/helpers.js';


/** Regress harness: -b 1 gives (256 << 10) / 1 entries. */
const BUFSIZE = 256 << 10;

async function obsd(t: Parameters<typeof makeApp>[0], env: Record<string, string> = {}): Promise<{ app: FastifyInstance; c: Client }> {
  const app = await makeApp(t, env);
  const res = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'obsd', dialect: 'openbsd' } });
  if (res.statusCode !== 201) throw new Error(res.body);
  return { app, c: new Client(app, 'obsd') };
}

/** main() of the regress program: open, KIOSETBUFSIZE, mmap (here: the area is readable), *cover = 0. */
async function harness(c: Client, tid = 1, size = BUFSIZE): Promise<number> {
  const fd = await c.open(tid);
  await c.ok(fd, 'KIOSETBUFSIZE', tid, size);
  const put = await c.app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 0 } });
  if (put.statusCode !== 200 && put.statusCode !== 204) throw new Error(`cover[0] = 0: ${put.statusCode} ${put.body}`);
  return fd;
}

async function count(c: Client, fd: number): Promise<number> {
  return (await c.cover(fd)).count;
}

t.test('kernel view: openbsd limits 1..512Ki, lowered by max_entries', async (t) => {
  const { app } = await obsd(t);
  const k = json(await app.inject({ method: 'GET', url: '/v1/kernels/obsd' }));
  t.equal(k.dialect, 'openbsd');
  t.equal(k.min_entries, 1);
  t.equal(k.max_entries, 512 << 10);
  await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'small', dialect: 'openbsd', max_entries: 1000 } });
  const c = new Client(app, 'small');
  const fd = await c.open();
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, 1001), 400, 'EINVAL');
  t.equal((await c.ok(fd, 'KIOSETBUFSIZE', 1, 1000)).descriptor.words, 1000);
});

t.test('regress test_close: open and close a second descriptor; the first stays empty', async (t) => {
  const { c } = await obsd(t);
  const fd = await harness(c);
  const fd2 = await c.open(1);
  t.equal((await c.close(fd2)).statusCode, 204);
  t.equal(await count(c, fd), 0, 'coverage 0');
  t.equal((await c.close(fd)).statusCode, 204);
});

t.test('regress test_coverage: KIOENABLE, a syscall, KIODISABLE: non-empty PC and CMP coverage', async (t) => {
  const { c } = await obsd(t);
  for (const [mode, n] of [['pc', 1], ['cmp', 2]] as const) {
    const fd = await harness(c);
    const en = await c.ok(fd, 'KIOENABLE', 1, n);
    t.equal(en.descriptor.state, 'TRACE');
    t.equal(en.descriptor.mode, mode);
    const r = mode === 'pc'
      ? json(await c.events(1, { sites: ['sys/kern/kern_prot.c:82'] }))
      : json(await c.binary(1, cmps([(3 << 1) | 1, 7, 8, 0x1000]), 'cmp'));
    t.equal(r.accepted, 1);
    await c.ok(fd, 'KIODISABLE', 1);
    const cov = await c.cover(fd);
    t.ok(cov.count > 0 && cov.count < BUFSIZE, `${mode}: coverage not empty, no overflow`);
    if (mode === 'cmp') t.ok(Number(cov.cmps[0].type) >> 1 <= 3, 'check_coverage: valid cmp size');
    await c.close(fd);
  }
});

t.test('regress test_dying: another thread closes while the owner traces; the owner exit frees it', async (t) => {
  const { app, c } = await obsd(t);
  const fd = await harness(c);
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await c.thread(2, { pid: 1, parent: 1 });
  t.equal((await c.close(fd)).statusCode, 204, 'closer thread: close -> kcovclose marks DYING');
  expectProblem(t, await c.close(fd), 404, 'EBADF');
  t.equal(json(await c.events(1, { pcs: [1] })).ignored, 1, 'DYING: kd_mode NONE, not traced');
  const th = json(await app.inject({ method: 'GET', url: `${c.base}/threads/1` }));
  t.equal(th.fd, fd, 'the owner still holds the dying descriptor');
  const before = json(await app.inject({ method: 'GET', url: '/v1/kernels/obsd' }));
  t.equal(before.memory, BUFSIZE * 8, 'buffer still held');
  t.equal((await c.exit(1)).statusCode, 204, 'kcov_exit');
  const after = json(await app.inject({ method: 'GET', url: '/v1/kernels/obsd' }));
  t.equal(after.memory, 0, 'freed at thread exit');
});

t.test('regress test_fork (and test_exec minus exec): the child enables; after its exit the fd is reusable', async (t) => {
  const { c } = await obsd(t);
  const fd = await harness(c);
  t.equal((await c.thread(2, { parent: 1 })).statusCode, 201, 'fork: child process 2');
  await c.ok(fd, 'KIOENABLE', 2, 'pc');
  await c.events(2, { pcs: [0x10, 0x20] });
  await c.exit(2);
  const d = json(await c.descriptor(fd));
  t.equal(d.state, 'READY', 'kcov_exit: READY');
  t.equal(d.owner, null);
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await c.ok(fd, 'KIODISABLE', 1);
  t.equal(await count(c, fd), 2, 'coverage from the child');
});

t.test('regress test_open: a second descriptor has its own buffer', async (t) => {
  const { c } = await obsd(t);
  const fd = await harness(c);
  const fd2 = await harness(c);
  await c.ok(fd2, 'KIOENABLE', 1, 'pc');
  await c.events(1, { pcs: [1, 2, 3] });
  await c.ok(fd2, 'KIODISABLE', 1);
  t.equal(await count(c, fd2), 3, 'fd2 non-empty');
  t.equal(await count(c, fd), 0, 'main fd empty');
});

t.test('regress test_state: the state transitions with NULL arguments', async (t) => {
  const { c } = await obsd(t);
  const fd = await harness(c);
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await c.ok(fd, 'KIODISABLE', 1);
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, null), 400, 'EFAULT');
  expectProblem(t, await c.ioctl(fd, 'KIODISABLE', 1), 403, 'EPERM');
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await c.events(1, { pcs: [1] });
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', 1, 'pc'), 409, 'EBUSY');
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, null), 400, 'EFAULT');
  await c.ok(fd, 'KIODISABLE', 1);
  t.ok(await count(c, fd) > 0, 'coverage not empty');
});

t.test('OpenBSD kcov.c kcovioctl errno paths over HTTP, with the BSD errno numbers', async (t) => {
  const { c } = await obsd(t);
  const fd = await c.open(1);
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', 1, 'pc'), 409, 'ENXIO');
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, 0), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, (512 << 10) + 1), 400, 'EINVAL');
  const nt = await c.ioctl(fd, 'KCOV_ENABLE', 1, 0);
  expectProblem(t, nt, 400, 'ENOTTY');
  t.equal(json(nt).code, 25);
  expectProblem(t, await c.ioctl(fd, '0x80044b02', 1, 'pc'), 409, 'ENXIO');
  const cov = await c.coverage(fd);
  expectProblem(t, cov, 400, 'EINVAL');
  t.match(json(cov).detail, /no coverage buffer/, 'mmap before KIOSETBUFSIZE');
  await c.ok(fd, '0x80084b01', 1, 8);
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', 1, 8), 409, 'EBUSY');
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', 1, 0), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KIOREMOTEATTACH', 1, { subsystem: 1, id: 0 }), 400, 'EINVAL');
  const timeout = await c.ioctl(fd, 'KIODISABLE', 2);
  expectProblem(t, timeout, 403, 'EPERM');
  t.equal(json(timeout).code, 1);
});

t.test('regress test_remote: KIOREMOTEATTACH, KIOENABLE, a task of the process, KIODISABLE', async (t) => {
  const { app, c } = await obsd(t);
  const fd = await harness(c);
  const at = await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0, id: 0 });
  t.equal(at.descriptor.remote, '0:1', 'registered as (KCOV_REMOTE_COMMON, process 1)');
  const en = await c.ok(fd, 'KIOENABLE', 1, 'pc');
  t.equal(en.descriptor.owner, null, 'the thread is not bound');
  t.equal(json(await c.events(1, { pcs: [1] })).ignored, 1, "the caller's syscalls are not traced");
  // taskq_thread runs the kqueue task inside kcov_remote_enter(KCOV_REMOTE_COMMON, work.t_process).
  const r = await app.inject({ method: 'POST', url: `${c.base}/remotes/0:1/events?context=task&tid=100`, payload: { pcs: [0xa, 0xb] } });
  t.equal(r.statusCode, 200, r.body);
  t.same(json(r), { accepted: 2, dropped: 0, ignored: 0, count: 2 });
  const list = json(await app.inject({ method: 'GET', url: `${c.base}/remotes` }));
  t.same(list.remotes, [{ remote: '0:1', subsystem: 0, id: 1, state: 'READY', fd, mode: 'pc', sections: 0, threads: [], cpus: [] }]);
  await c.ok(fd, 'KIODISABLE', 2, undefined);
  t.equal(await count(c, fd), 2, 'coverage not empty');
});

t.test('regress test_remote_close: close with remote coverage enabled frees at once', async (t) => {
  const { app, c } = await obsd(t);
  const fd = await harness(c);
  await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0, id: 0 });
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  t.equal((await c.close(fd)).statusCode, 204);
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/obsd' })).memory, 0, 'kd_free at once');
  t.same(json(await app.inject({ method: 'GET', url: `${c.base}/remotes` })).remotes, [], 'the remote is gone');
  const fresh = await harness(c);
  t.equal(await count(c, fresh), 0, 'a fresh fd is empty');
});

t.test('regress test_remote_interrupt: softclock sections on per-CPU areas, copied at leave', async (t) => {
  const { app, c } = await obsd(t, { KCOV_CPU_AREA_WORDS: '1024' });
  const fd = await harness(c, 1, 6);
  await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0, id: 0 });
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  const irq = (cpu: number, body: Buffer) => app.inject({
    method: 'POST',
    url: `${c.base}/remotes/0:1/events?context=interrupt&cpu=${cpu}&tid=1`,
    headers: { 'content-type': 'application/octet-stream' },
    payload: body,
  });
  let r = json(await irq(0, pcs(1, 2, 3)));
  t.same(r, { accepted: 3, dropped: 0, ignored: 0, count: 3 }, 'copied (kd_claim of 3 fits in kd_nmemb 5)');
  const cpus = json(await app.inject({ method: 'GET', url: `${c.base}/cpus` })).cpus;
  t.same(cpus[0], { cpu: 0, words: 1024, count: 3, section: null }, 'CPU 0 has its own area, count kept after leave');
  t.equal(cpus[1].words, null, 'CPU 1 unused');
  r = json(await irq(1, pcs(4, 5, 6)));
  t.same(r, { accepted: 0, dropped: 3, ignored: 0, count: 3 }, 'three more do not fit: all or nothing, none copied');
  t.equal(await count(c, fd), 3);
  r = json(await irq(1, pcs(4, 5)));
  t.same([r.accepted, r.dropped], [2, 0], 'two fit exactly at the boundary');
  t.same((await c.cover(fd)).pcs, ['0x1', '0x2', '0x3', '0x4', '0x5']);
  t.equal(json(await c.events(1, { pcs: [9] })).ignored, 1, 'the interrupted thread itself is not traced');
  await c.ok(fd, 'KIODISABLE', 1);
  r = json(await irq(0, pcs(7)));
  t.equal(r.ignored, 1, 'after KIODISABLE: no section, interrupt context is not traced');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/0:1/events?context=interrupt&cpu=9`, payload: { pcs: [1] } }), 404, 'ENOENT');
});

t.test('kernel side PUT/DELETE /remotes: kcov_remote_register blocks KIOREMOTEATTACH of that process', async (t) => {
  const { app, c } = await obsd(t);
  let r = await app.inject({ method: 'PUT', url: `${c.base}/remotes/0:5` });
  t.equal(r.statusCode, 201);
  t.same(json(r), { remote: '0:5', created: true });
  r = await app.inject({ method: 'PUT', url: `${c.base}/remotes/0:5` });
  t.equal(r.statusCode, 200, 'already there');
  await c.thread(5);
  const fd = await harness(c, 5, 16);
  expectProblem(t, await c.ioctl(fd, 'KIOREMOTEATTACH', 5, { subsystem: 0 }), 409, 'EBUSY');
  t.equal((await app.inject({ method: 'DELETE', url: `${c.base}/remotes/0:5` })).statusCode, 204);
  await c.ok(fd, 'KIOREMOTEATTACH', 5, { subsystem: 0 });
  expectProblem(t, await app.inject({ method: 'DELETE', url: `${c.base}/remotes/0:6` }), 404, 'ENOENT');
  expectProblem(t, await app.inject({ method: 'PUT', url: `${c.base}/remotes/0x0100000000000001` }), 400, 'EINVAL');
});

t.test('kr_barrier over HTTP: KIODISABLE waits for an open task section, then succeeds', async (t) => {
  const { app, c } = await obsd(t, { KCOV_BARRIER_TIMEOUT_MS: '2000' });
  const fd = await harness(c, 1, 64);
  await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  const enter = await app.inject({ method: 'POST', url: `${c.base}/threads/40/remote`, payload: { subsystem: 0, id: 1 } });
  t.equal(enter.statusCode, 200, enter.body);
  t.same(json(enter).section, { remote: '0:1', context: 'task' });
  t.equal(json(enter).fd, fd, 'p_kd is the attached descriptor');
  const remotes = json(await app.inject({ method: 'GET', url: `${c.base}/remotes` })).remotes;
  t.same([remotes[0].sections, remotes[0].threads], [1, [40]], 'GET /remotes shows the open section');
  await c.events(40, { pcs: [1, 2] });
  let settled = false;
  const disable = c.ioctl(fd, 'KIODISABLE', 1).then((res) => { settled = true; return res; });
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.notOk(settled, 'KIODISABLE is still waiting in kr_barrier');
  const leave = await app.inject({ method: 'DELETE', url: `${c.base}/threads/40/remote` });
  t.equal(leave.statusCode, 200);
  t.equal(json(leave).section, null);
  const res = await disable;
  t.equal(res.statusCode, 200, res.body);
  t.equal(json(res).descriptor.state, 'READY');
  t.equal(await count(c, fd), 2, 'the section wrote into the area');
});

t.test('kr_barrier over HTTP: a section still open after the bound is ETIMEDOUT (409), nothing changed', async (t) => {
  const { app, c } = await obsd(t, { KCOV_BARRIER_TIMEOUT_MS: '30' });
  const fd = await harness(c, 1, 64);
  await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await app.inject({ method: 'POST', url: `${c.base}/threads/40/remote`, payload: { subsystem: 0, id: 1 } });
  const res = await c.ioctl(fd, 'KIODISABLE', 1);
  expectProblem(t, res, 409, 'ETIMEDOUT');
  t.equal(json(res).code, 60, 'BSD ETIMEDOUT');
  t.match(json(res).detail, /thread 40/);
  t.equal(json(await c.descriptor(fd)).state, 'TRACE', 'still tracing');
  expectProblem(t, await c.close(fd), 409, 'ETIMEDOUT');
  t.equal((await c.descriptor(fd)).statusCode, 200, 'close refused: the fd stays open');
  expectProblem(t, await app.inject({ method: 'DELETE', url: `${c.base}/remotes/0:1` }), 409, 'ETIMEDOUT');
  await app.inject({ method: 'DELETE', url: `${c.base}/threads/40/remote` });
  t.equal((await c.close(fd)).statusCode, 204, 'after leave, close frees at once');
});

t.test('a thread section is EBUSY for a thread that traces itself (KASSERT(p->p_kd == NULL))', async (t) => {
  const { app, c } = await obsd(t);
  const r = await harness(c, 1, 16);
  await c.ok(r, 'KIOREMOTEATTACH', 1, { subsystem: 0 });
  await c.ok(r, 'KIOENABLE', 1, 'pc');
  const own = await harness(c, 7, 16);
  await c.ok(own, 'KIOENABLE', 7, 'pc');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/7/remote`, payload: { subsystem: 0, id: 1 } }), 409, 'EBUSY');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/0:1/events?context=task&tid=7`, payload: { pcs: [1] } }), 409, 'EBUSY');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/7/remote`, payload: { handle: '0x1' } }), 400, 'EINVAL');
});
