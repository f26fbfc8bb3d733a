/**
 * A request that ends in an error changes nothing: every route that creates a
 * thread on sight (a tid not seen yet) leaves no thread behind when it fails,
 * whether the failure is a 400, a 404, a 501 or a 507. Kernel.atomic undoes
 * what the request created, so failures alone can never fill KCOV_MAX_THREADS.
 */
import t from 'tap';
import { Client, expectProblem, json, makeApp } from '../helpers.js';

async function tids(c: Client): Promise<number[]> {
  const res = await c.app.inject({ url: `${c.base}/threads` });
  return json(res).threads.map((x: { tid: number }) => x.tid).sort((a: number, b: number) => a - b);
}

async function kernel(c: Client, name: string, dialect: string): Promise<Client> {
  const res = await c.app.inject({ method: 'POST', url: '/v1/kernels', payload: { name, dialect } });
  t.equal(res.statusCode, 201, `kernel ${name}`);
  return new Client(c.app, name);
}

t.test('POST /descriptors {tid}: past KCOV_MAX_DESCRIPTORS (507) the named thread is not made', async (t) => {
  const c = new Client(await makeApp(t, { KCOV_MAX_DESCRIPTORS: '1' }));
  await c.open();
  const res = await c.app.inject({ method: 'POST', url: `${c.base}/descriptors`, payload: { tid: 7 } });
  expectProblem(t, res, 507, 'ENOMEM');
  t.same(await tids(c), []);
});

t.test('POST /ioctl: 400, 501 and 507 answers leave no thread', async (t) => {
  const c = new Client(await makeApp(t, { KCOV_MEMORY_LIMIT: '64K' }));
  const fd = await c.open();
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 5, 1), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 6, 1 << 20), 507, 'ENOMEM');
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  const nocmp = await c.app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'nocmp', dialect: 'linux', config: { CONFIG_KCOV_ENABLE_COMPARISONS: false } } });
  t.equal(nocmp.statusCode, 201);
  const n = new Client(c.app, 'nocmp');
  const nfd = await n.open();
  await n.ok(nfd, 'KCOV_INIT_TRACE', 1, 16);
  expectProblem(t, await n.ioctl(nfd, 'KCOV_ENABLE', 8, 'cmp'), 501, 'ENOTSUPP');
  t.same(await tids(c), [1], 'only the thread whose ioctl succeeded');
  t.same(await tids(n), [1]);
});

t.test('POST /threads/{tid}/events: a bad batch makes no thread', async (t) => {
  const c = new Client(await makeApp(t));
  expectProblem(t, await c.events(9, { pcs: ['x'] }), 400, 'EINVAL');
  expectProblem(t, await c.binary(9, Buffer.alloc(7)), 400, 'EINVAL');
  t.same(await tids(c), []);
});

t.test('POST /threads/{tid}/remote and one-shot sections: 404, 501 and 507 leave no thread', async (t) => {
  const app = await makeApp(t, { KCOV_MEMORY_LIMIT: '64K' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 1 << 20, handles: ['0x0100000000000001'] });
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/2/remote`, payload: { handle: '0x0100000000000001' } }), 507, 'ENOMEM');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/0x0100000000000001/events?tid=3`, payload: { pcs: [1] } }), 507, 'ENOMEM');
  t.same(await tids(c), [1]);

  const nb = await kernel(c, 'nb', 'netbsd');
  expectProblem(t, await app.inject({ method: 'POST', url: `${nb.base}/threads/4/remote`, payload: { subsystem: 0, id: 1 } }), 404, 'ENOENT');
  expectProblem(t, await app.inject({ method: 'POST', url: `${nb.base}/remotes/0:1/events?context=interrupt&cpu=0&tid=5`, payload: { pcs: [1] } }), 501, 'EOPNOTSUPP');
  t.same(await tids(nb), []);

  const fb = await kernel(c, 'fb', 'freebsd');
  expectProblem(t, await app.inject({ method: 'PUT', url: `${fb.base}/threads/6/silence` }), 501, 'EOPNOTSUPP');
  t.same(await tids(fb), []);
});

t.test('KCOV_REMOTE_ENABLE past KCOV_MAX_REMOTES is ENOMEM and registers nothing', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_REMOTES: '2' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  const handles = ['0x0100000000000001', '0x0100000000000002', '0x0100000000000003'];
  expectProblem(t, await c.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 16, handles }), 507, 'ENOMEM');
  t.same(json(await app.inject({ url: `${c.base}/remotes` })).remotes, [], 'kcov_remote_reset removed the first two');
  t.equal(json(await c.descriptor(fd)).state, 'INIT', 'kcov_disable rolled the descriptor back');
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 16, handles: handles.slice(0, 2) });
  t.equal(json(await app.inject({ url: '/v1/kernels' })).memory.by.remotes > 0, true, 'registered remotes are charged');
});

t.test('PUT /threads/{tid} with a parent never named: the parent is made too (API.md), or neither', async (t) => {
  const c = new Client(await makeApp(t, { KCOV_MAX_THREADS: '2' }));
  const res = await c.thread(101, { pid: 100, parent: 100 });
  t.equal(res.statusCode, 201);
  t.match(json(res), { tid: 101, pid: 100 });
  t.match(json(await c.app.inject({ url: `${c.base}/threads/100` })), { tid: 100, pid: 100 }, 'the parent, the only thread of process 100');
  expectProblem(t, await c.thread(201, { parent: 200 }), 507, 'ENOMEM');
  t.same(await tids(c), [100, 101], 'the failed fork left neither child nor parent');
  expectProblem(t, await c.thread(5, { parent: 5 }), 400, 'EINVAL');
});

t.test('the parent rule per dialect: Linux hands on the common handle, the BSDs nothing', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 16, common_handle: '0x2a' });
  t.equal(json(await c.thread(2, { parent: 1 })).handle, '0x2a', 'kcov_task_init: the child gets t->kcov_handle');
  t.equal(json(await c.thread(4, { parent: 3 })).handle, null, 'a parent made on sight has none to give');
  for (const dialect of ['openbsd', 'netbsd', 'freebsd']) {
    const k = await kernel(c, dialect, dialect);
    const child = json(await k.thread(11, { pid: 10, parent: 10 }));
    t.match(child, { tid: 11, pid: 10, fd: null, handle: null }, `${dialect}: nothing is inherited`);
    t.same(await tids(k), [10, 11], `${dialect}: the parent exists`);
  }
});
