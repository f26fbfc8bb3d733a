import t from 'tap';
import { Client, expectProblem, json, makeApp } from '#test/helpers.js';

t.test('the default kernel exists at start with the configured dialect', async (t) => {
  const app = await makeApp(t);
  const list = json(await app.inject({ url: '/v1/kernels' }));
  t.equal(list.kernels.length, 1);
  t.match(list.kernels[0], { name: 'default', dialect: 'linux', ncpus: 2, descriptors: 0, threads: 0, remotes: 0, memory: 0 });
  const one = json(await app.inject({ url: '/v1/kernels/default' }));
  t.same(one, list.kernels[0]);
});

t.test('create, inspect, tear down', async (t) => {
  const app = await makeApp(t);
  const made = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'fleet-1', dialect: 'linux', ncpus: 4 } });
  t.equal(made.statusCode, 201);
  t.match(json(made), { name: 'fleet-1', dialect: 'linux', ncpus: 4 });
  const auto = json(await app.inject({ method: 'POST', url: '/v1/kernels', payload: { dialect: 'linux' } }));
  t.match(auto.name, /^k\d+$/, 'a generated name');
  expectProblem(t, await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'fleet-1', dialect: 'linux' } }), 409, 'EEXIST');
  expectProblem(t, await app.inject({ method: 'POST', url: '/v1/kernels', payload: { dialect: 'plan9' } }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: '../x', dialect: 'linux' } }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'POST', url: '/v1/kernels', payload: { dialect: 'linux', ncpus: 0 } }), 400, 'EINVAL');

  const c = new Client(app, 'fleet-1');
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 512);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);
  const k = json(await app.inject({ url: '/v1/kernels/fleet-1' }));
  t.match(k, { descriptors: 1, threads: 1, memory: 4096 });
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/kernels/fleet-1' })).statusCode, 204);
  expectProblem(t, await app.inject({ url: '/v1/kernels/fleet-1' }), 404, 'ENOENT');
  expectProblem(t, await app.inject({ method: 'DELETE', url: '/v1/kernels/fleet-1' }), 404, 'ENOENT');
  t.equal(app.engine.budget.used, 0, 'its memory went back to the budget');
});

t.test('max_entries lowers the size limit of a kernel', async (t) => {
  const app = await makeApp(t);
  await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'small', dialect: 'linux', max_entries: 1024 } });
  const c = new Client(app, 'small');
  const fd = await c.open();
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 1025), 400, 'EINVAL');
  t.equal((await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 1024)).statusCode, 200);
  t.equal(json(await app.inject({ url: '/v1/kernels/small' })).max_entries, 1024);
});

t.test('KCOV_DIALECT picks the default kernel dialect; unknown routes are 404 ENOENT problems', async (t) => {
  const app = await makeApp(t);
  expectProblem(t, await app.inject({ url: '/v2/nothing' }), 404, 'ENOENT');
  t.same(json(await app.inject({ url: '/healthz' })), { status: 'ok' });
  t.same(json(await app.inject({ url: '/readyz' })), { ready: true, draining: false });
  app.appState.draining = true;
  const draining = await app.inject({ url: '/readyz' });
  t.equal(draining.statusCode, 503);
  app.appState.draining = false;
});

t.test('a Linux kernel built without comparisons answers ENOTSUPP (501, code 524) to KCOV_TRACE_CMP', async (t) => {
  const app = await makeApp(t);
  const made = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'old', dialect: 'linux', config: { CONFIG_KCOV_ENABLE_COMPARISONS: false } } });
  t.same(json(made).config, { CONFIG_KCOV_ENABLE_COMPARISONS: false, CONFIG_KCOV_UNIQUE: true });
  const c = new Client(app, 'old');
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 8);
  const res = await c.ioctl(fd, 'KCOV_ENABLE', 1, 'cmp');
  expectProblem(t, res, 501, 'ENOTSUPP');
  t.equal(json(res).code, 524, 'the kernel-internal ENOTSUPP userspace sees');
  expectProblem(t, await app.inject({ method: 'POST', url: '/v1/kernels', payload: { dialect: 'linux', config: { CONFIG_X: 1 } } }), 400, 'EINVAL');
});
