/**
 * NetBSD kcov over HTTP: the errno paths of sys/kern/subr_kcov.c v1.18 with
 * their statuses, the ATF cases of tests/modules/t_kcov.c that have an HTTP
 * meaning, and the remote and silence routes.
 */
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { Client, expectProblem, json, makeApp } from '#test/helpers.js';

const PAGE_SIZE = 4096;
/** common_head_raw: KCOV_IOC_SETBUFSIZE of one page of entries. */
const PAGE_ENTRIES = PAGE_SIZE / 8;
const VHCI = { subsystem: 0, id: '0x100000001' }; // KCOV_REMOTE_VHCI_ID(1, 1)
const VHCI_PATH = '0:0x100000001';

async function netbsdKernel(app: FastifyInstance, body: Record<string, unknown> = {}): Promise<Client> {
  const res = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'nbsd', dialect: 'netbsd', ...body } });
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`);
  return new Client(app, 'nbsd');
}

/** common_head: open, KCOV_IOC_SETBUFSIZE(PAGE_SIZE / 8), "mmap" (the coverage route). */
async function commonHead(c: Client, tid: number): Promise<number> {
  const fd = await c.open(tid);
  await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', tid, PAGE_ENTRIES);
  return fd;
}

function put(c: Client, path: string, payload?: unknown) {
  return c.app.inject({ method: 'PUT', url: `${c.base}${path}`, ...(payload === undefined ? {} : { payload: payload as object }) });
}

function del(c: Client, path: string) {
  return c.app.inject({ method: 'DELETE', url: `${c.base}${path}` });
}

t.test('POST /v1/kernels with max_entries 524288 lets KCOV_IOC_SETBUFSIZE take 512Ki entries', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app, { max_entries: 524288 });
  const k = json(await app.inject({ method: 'GET', url: '/v1/kernels/nbsd' }));
  t.equal(k.max_entries, 524288);
  t.equal(k.min_entries, 2);
  const fd = await c.open(1);
  const r = await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, 524288);
  t.equal(r.descriptor.words, 524288);
  expectProblem(t, await c.ioctl(await c.open(1), 'KCOV_IOC_SETBUFSIZE', 1, 524289), 400, 'EINVAL');

  const plain = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'v117', dialect: 'netbsd' } });
  t.equal(json(plain).max_entries, 262144, 'without it: KCOV_BUF_MAX_ENTRIES (256 << 10)');
  const c2 = new Client(app, 'v117');
  expectProblem(t, await c2.ioctl(await c2.open(1), 'KCOV_IOC_SETBUFSIZE', 1, 524288), 400, 'EINVAL');
});

t.test('kcov_fops_ioctl errno paths with their statuses and BSD numbers', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await c.open(1);
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 64), 400, 'EINVAL'); // default: error = EINVAL
  expectProblem(t, await c.ioctl(fd, '0x20004b0c', 1), 400, 'EINVAL');
  const nobuf = await c.ioctl(fd, 'KCOV_IOC_ENABLE', 1, 'pc');
  expectProblem(t, nobuf, 409, 'ENOBUFS');
  t.equal(json(nobuf).code, 55, 'ENOBUFS is 55 on NetBSD');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_ENABLE', 1, 3), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_SETBUFSIZE', 1, 1), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_DISABLE', 1), 404, 'ENOENT');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_REMOTE_ATTACH', 1, VHCI), 404, 'ENOENT');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_REMOTE_DETACH', 1), 404, 'ENOENT');
  await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, 64);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_SETBUFSIZE', 1, 64), 409, 'EEXIST');
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 1);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_SETBUFSIZE', 1, 64), 409, 'EBUSY');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_REMOTE_ATTACH', 1, VHCI), 409, 'EEXIST');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_REMOTE_DETACH', 1), 409, 'EEXIST');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_DISABLE', 2), 404, 'ENOENT');
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_ENABLE', 1, 'bogus'), 400, 'EINVAL');
  await c.close(fd);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_DISABLE', 1), 404, 'EBADF'); // a closed fd never reaches kd == NULL (ENXIO)
});

t.test('descriptor state is derived from the kcov_t fields', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await c.open(1);
  t.equal(json(await c.descriptor(fd)).state, 'NOBUF');
  t.equal((await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, 64)).descriptor.state, 'READY');
  const en = (await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 'cmp')).descriptor;
  t.match(en, { state: 'ENABLED', mode: 'cmp', kd_mode: 'cmp', enabled: true, owner: 1, bufsize: 4096, remote: null });
  t.equal((await c.ok(fd, 'KCOV_IOC_DISABLE', 1)).descriptor.state, 'READY');
});

// ---- tests/modules/t_kcov.c -----------------------------------------------------------

t.test('t_kcov.c kcov_multiopen and kcov_open_close_open: every open is a new descriptor', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd1 = await c.open(1);
  const fd2 = await c.open(1);
  t.not(fd1, fd2, 'multiple opens');
  t.equal((await c.close(fd1)).statusCode, 204);
  const fd3 = await c.open(1);
  t.ok(fd3 > fd2, 'open after close');
});

t.test('t_kcov.c kcov_bufsize: 0 entries fails, 2 entries works', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await c.open(1);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_SETBUFSIZE', 1, 0), 400, 'EINVAL');
  await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, 2);
});

t.test('t_kcov.c kcov_mmap: mapping before KCOV_IOC_SETBUFSIZE fails (ENOMEM), after it works', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await c.open(1);
  expectProblem(t, await c.coverage(fd, 'application/octet-stream'), 507, 'ENOMEM');
  expectProblem(t, await put(c, `/descriptors/${fd}/coverage/count`, { count: 0 }), 507, 'ENOMEM');
  await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, (2 * PAGE_SIZE) / 8);
  const res = await c.coverage(fd, 'application/octet-stream');
  t.equal(res.statusCode, 200);
  t.equal(res.rawPayload.length, 2 * PAGE_SIZE, 'the whole buffer');
  t.equal((await c.close(fd)).statusCode, 204);
});

t.test('t_kcov.c kcov_enable: the enable/disable sequence', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await c.open(1);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_ENABLE', 1, 0), 409, 'ENOBUFS');
  await c.ok(fd, 'KCOV_IOC_SETBUFSIZE', 1, PAGE_ENTRIES);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_DISABLE', 1), 404, 'ENOENT'); // "We need to enable before disable"
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 0); // KCOV_MODE_NONE
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_ENABLE', 1, 0), 409, 'EBUSY'); // already enabled
  await c.ok(fd, 'KCOV_IOC_DISABLE', 1);
  expectProblem(t, await c.ioctl(fd, 'KCOV_IOC_DISABLE', 1), 404, 'ENOENT'); // "Disable should only be called once"
  // "Re-enabling and changing mode should also work"
  for (const mode of [0, 1, 2]) {
    await c.ok(fd, 'KCOV_IOC_ENABLE', 1, mode);
    await c.ok(fd, 'KCOV_IOC_DISABLE', 1);
  }
  t.equal((await c.close(fd)).statusCode, 204);
});

t.test('t_kcov.c kcov_enable_no_disable: close while enabled, freed when the LWP exits (lwpfree)', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await commonHead(c, 1);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 'none');
  t.equal((await c.close(fd)).statusCode, 204);
  t.equal((await c.descriptor(fd)).statusCode, 404, 'the fd is gone');
  const k = () => app.inject({ method: 'GET', url: '/v1/kernels/nbsd' }).then(json);
  t.equal((await k()).memory, PAGE_SIZE, 'kd still held by its LWP');
  t.equal(json(await app.inject({ method: 'GET', url: `${c.base}/threads/1` })).fd, fd, 'l_kcov');
  t.equal((await c.exit(1)).statusCode, 204);
  t.equal((await k()).memory, 0, 'kcov_lwp_free freed it');
});

t.test('t_kcov.c kcov_enable_no_disable_no_close: the LWP exits enabled, then the process closes the fd', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await commonHead(c, 1);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 'none');
  await c.exit(1);
  t.equal(json(await c.descriptor(fd)).state, 'READY', 'kcov_lwp_free: enabled = false, not freed (fd open)');
  await c.close(fd);
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/nbsd' })).memory, 0);
});

t.test('t_kcov.c kcov_mmap_enable_thread_close: closing an fd another LWP enabled', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  await c.thread(2, { pid: 1 });
  const fd = await commonHead(c, 2);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 2, 'pc');
  t.equal((await c.close(fd)).statusCode, 204, 'main LWP closes');
  t.match(json(await c.events(2, { pcs: ['0x10'] })), { accepted: 1 }, 'LWP 2 still writes its buffer');
  t.equal((await c.exit(2)).statusCode, 204, 'LWP 2 exits');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/nbsd' })).memory, 0, 'kd freed at its exit');
});

t.test('t_kcov.c kcov_basic_pc: records appear while enabled', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await commonHead(c, 1);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 1);
  t.equal((await put(c, `/descriptors/${fd}/coverage/count`, { count: 0 })).statusCode, 200); // buf[0] = 0
  await c.events(1, { pcs: ['0xffffffff80001000', '0xffffffff80001004'] }); // sleep(0)
  const cov = await c.cover(fd);
  t.not(cov.count, 0, 'No records found');
  t.same(cov.pcs, ['0xffffffff80001000', '0xffffffff80001004']);
  await c.ok(fd, 'KCOV_IOC_DISABLE', 1);
});

t.test('t_kcov.c kcov_multienable_on_the_same_thread: the second enable is EBUSY', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd1 = await commonHead(c, 1);
  const fd2 = await commonHead(c, 1);
  await c.ok(fd1, 'KCOV_IOC_ENABLE', 1, 'none');
  expectProblem(t, await c.ioctl(fd2, 'KCOV_IOC_ENABLE', 1, 'none'), 409, 'EBUSY');
  await c.ok(fd1, 'KCOV_IOC_DISABLE', 1);
});

t.test('t_kcov.c kcov_thread: another LWP of the process is not traced into this buffer', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  await c.thread(2, { pid: 1 });
  const fd = await commonHead(c, 1);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 'pc');
  await put(c, `/descriptors/${fd}/coverage/count`, { count: 0 });
  const other = json(await c.events(2, { pcs: Array.from({ length: 1000 }, (_, i) => i + 1) })); // getpid() x 1000
  t.match(other, { accepted: 0, ignored: 1000 });
  t.equal((await c.cover(fd)).count, 0, 'Records changed in blocked thread');
  await c.ok(fd, 'KCOV_IOC_DISABLE', 1);
});

t.test('t_kcov.c kcov_multiple_threads{2,4,8,16,32}: each LWP sees only its own records', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  for (const n of [2, 4, 8, 16, 32]) {
    const fds: number[] = [];
    for (let i = 0; i < n; i++) {
      const tid = 100 + i;
      await c.thread(tid, { pid: 100 });
      const fd = await commonHead(c, tid);
      await c.ok(fd, 'KCOV_IOC_ENABLE', tid, 'pc');
      fds.push(fd);
    }
    for (let i = 0; i < n; i++) await c.events(100 + i, { pcs: [0x1000 + i] });
    for (let i = 0; i < n; i++) {
      const cov = await c.cover(fds[i]!);
      t.same(cov.pcs, ['0x' + (0x1000 + i).toString(16)], `${n} threads: LWP ${100 + i}`);
      await c.ok(fds[i]!, 'KCOV_IOC_DISABLE', 100 + i);
      await c.close(fds[i]!);
    }
    for (let i = 0; i < n; i++) await c.exit(100 + i);
  }
});

// ---- remotes -----------------------------------------------------------------------------

t.test('kcov_remote_register / attach / enter: a section traces into the shared remote buffer', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const reg = await put(c, `/remotes/${VHCI_PATH}`);
  t.equal(reg.statusCode, 201);
  t.same(json(reg), { remote: '0:4294967297', created: true });
  t.equal((await put(c, '/remotes/0:4294967297')).statusCode, 200, 'already registered');
  expectProblem(t, await put(c, '/remotes/0x1000000000000001'), 400, 'EINVAL'); // a Linux handle

  const a = await c.open(1);
  const b = await c.open(2);
  await c.ok(a, 'KCOV_IOC_REMOTE_ATTACH', 1, VHCI);
  const attached = (await c.ok(b, 'KCOV_IOC_REMOTE_ATTACH', 2, VHCI)).descriptor;
  t.match(attached, { state: 'REMOTE', remote: { remote: '0:4294967297', enabled: false, words: 262144 } });
  t.equal((await c.ok(a, 'KCOV_IOC_SETBUFSIZE', 1, 0)).ret, 0, 'no-op with a remote attached');

  const section = (tid: number, pcs: unknown[]) =>
    app.inject({ method: 'POST', url: `${c.base}/remotes/${VHCI_PATH}/events?context=task&tid=${tid}`, payload: { pcs } });
  t.match(json(await section(9, ['0x1'])), { accepted: 0, ignored: 1 }, 'remote not enabled');
  await c.ok(a, 'KCOV_IOC_ENABLE', 1, 'pc');
  expectProblem(t, await c.ioctl(b, 'KCOV_IOC_ENABLE', 2, 'pc'), 409, 'EBUSY');
  t.match(json(await section(9, ['0x10', '0x20'])), { accepted: 2, count: 2 });
  t.same((await c.cover(b)).pcs, ['0x10', '0x20'], 'the other attached fd maps the same buffer');
  t.equal(json(await put(c, `/descriptors/${b}/coverage/count`, { count: 0 })).count, 0);
  t.equal((await c.cover(a)).count, 0, 'PUT count wrote the shared remote buffer');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/0:7/events?context=task&tid=9`, payload: { pcs: [1] } }), 404, 'ENOENT');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/${VHCI_PATH}/events?context=interrupt&cpu=0`, payload: { pcs: [1] } }), 501, 'EOPNOTSUPP');

  // An open section on thread 9 (kcov_remote_enter .. kcov_remote_leave).
  const enter = await app.inject({ method: 'POST', url: `${c.base}/threads/9/remote`, payload: VHCI });
  t.equal(enter.statusCode, 200);
  t.same(json(enter).section, { remote: '0:4294967297', context: 'task' });
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/10/remote`, payload: VHCI }), 409, 'EBUSY');
  t.match(json(await c.events(9, { pcs: ['0x30'] })), { accepted: 1, count: 1 });
  const list = json(await app.inject({ method: 'GET', url: `${c.base}/remotes` }));
  t.match(list.remotes, [{ remote: '0:4294967297', subsystem: '0', id: '4294967297', enabled: true, kd_mode: 'pc', attached: [a, b], section: 9, count: 1 }]);
  expectProblem(t, await del(c, `/remotes/${VHCI_PATH}`), 409, 'EBUSY');
  t.equal((await del(c, '/threads/9/remote')).statusCode, 200);
  expectProblem(t, await del(c, '/threads/9/remote'), 404, 'ENOENT');
  t.match(json(await c.events(9, { pcs: ['0x40'] })), { accepted: 0, ignored: 1 }, 'left');

  await c.ok(b, 'KCOV_IOC_DISABLE', 2);
  expectProblem(t, await c.ioctl(a, 'KCOV_IOC_DISABLE', 1), 404, 'ENOENT');
  await c.ok(a, 'KCOV_IOC_REMOTE_DETACH', 1);
  await c.close(b); // kcov_fops_close disables the remote and frees the kd
  t.equal((await del(c, '/remotes/0:4294967297')).statusCode, 204, 'nothing attached: unregistered');
  expectProblem(t, await del(c, '/remotes/0:4294967297'), 404, 'ENOENT');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/nbsd' })).memory, 0);
});

t.test('kcov_silence_enter / kcov_silence_leave routes', async (t) => {
  const app = await makeApp(t);
  const c = await netbsdKernel(app);
  const fd = await commonHead(c, 1);
  await c.ok(fd, 'KCOV_IOC_ENABLE', 1, 'pc');
  const on = await put(c, '/threads/1/silence');
  t.equal(on.statusCode, 200);
  t.equal(json(on).silenced, true);
  t.match(json(await c.events(1, { pcs: [1, 2] })), { accepted: 0, ignored: 2 }, 'silenced LWP: ignored');
  t.equal(json(await c.descriptor(fd)).silenced, true, 'kd->silenced');
  const off = await del(c, '/threads/1/silence');
  t.equal(json(off).silenced, false);
  t.match(json(await c.events(1, { pcs: [3] })), { accepted: 1 });
  t.equal((await del(c, '/threads/1/silence')).statusCode, 200, 'unbalanced leave: a no-op, as the bool flag makes it');
  t.equal(json(await put(c, '/threads/5/silence')).silenced, false, 'no l_kcov: nothing to silence');
  expectProblem(t, await del(c, '/threads/77/silence'), 404, 'ESRCH');
});
