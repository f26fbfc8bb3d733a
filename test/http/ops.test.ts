/** Operations: caps, body limit, auth, request ids, metrics, long-poll, draining. */
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { Client, expectProblem, json, makeApp, pcs } from '../helpers.js';
import { COST } from '../../src/engine/kernel/costs.js';

t.test('KCOV_MAX_DESCRIPTORS: the open past the cap is ENOMEM 507 and opens nothing', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_DESCRIPTORS: '2' });
  const c = new Client(app);
  await c.open();
  await c.open();
  const res = await app.inject({ method: 'POST', url: '/v1/kernels/default/descriptors', payload: {} });
  expectProblem(t, res, 507, 'ENOMEM');
  t.equal(app.engine.kernel('default').descriptors.size, 2);
  t.equal((await c.close(3)).statusCode, 204);
  t.equal(await c.open(), 5, 'a closed fd frees a slot; fds are still never reused');
});

t.test('KCOV_MAX_THREADS: a new tid past the cap is ENOMEM, existing ones keep working', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_THREADS: '2' });
  const c = new Client(app);
  t.equal((await c.thread(1)).statusCode, 201);
  t.equal((await c.events(2, { pcs: [1] })).statusCode, 200, 'created on sight');
  expectProblem(t, await c.thread(3), 507, 'ENOMEM');
  expectProblem(t, await c.events(4, { pcs: [1] }), 507, 'ENOMEM');
  const fd = await c.open();
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 5, 8), 507, 'ENOMEM');
  t.equal((await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 8)).statusCode, 200);
  t.equal(app.engine.kernel('default').threads.size, 2);
  t.equal((await c.exit(2)).statusCode, 204);
  t.equal((await c.thread(3)).statusCode, 201, 'an exit frees a slot');
});

t.test('KCOV_MAX_KERNELS counts the default kernel', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_KERNELS: '2' });
  const mk = (name: string) => app.inject({ method: 'POST', url: '/v1/kernels', payload: { name, dialect: 'linux' } });
  t.equal((await mk('a')).statusCode, 201);
  expectProblem(t, await mk('b'), 507, 'ENOMEM');
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/kernels/a' })).statusCode, 204);
  t.equal((await mk('b')).statusCode, 201);
});

t.test('KCOV_MAX_GUARDS: PCs past the cap get no guard and are recorded every time', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_GUARDS: '2' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  await c.ok(fd, 'KCOV_UNIQUE_ENABLE', 1, 1);
  const r = json(await c.events(1, { pcs: [0x10, 0x20, 0x30, 0x10, 0x20, 0x30] }));
  t.same([r.accepted, r.ignored], [4, 2], '0x10 and 0x20 deduplicated, 0x30 (third distinct PC) recorded twice');
});

t.test('config: limits are validated', async (t) => {
  t.throws(() => loadConfig({ KCOV_MAX_THREADS: '0' }), /KCOV_MAX_THREADS/);
  t.throws(() => loadConfig({ KCOV_MAX_DESCRIPTORS: 'many' }), /KCOV_MAX_DESCRIPTORS/);
  t.throws(() => loadConfig({ KCOV_MAX_WAIT: '5000', KCOV_CONNECTION_TIMEOUT: '1000' }), /KCOV_CONNECTION_TIMEOUT/);
  const c = loadConfig({ KCOV_REQUEST_TIMEOUT: '1234', KCOV_MAX_KERNELS: '7' });
  t.equal(c.requestTimeout, 1234);
  t.equal(c.maxKernels, 7);
});

t.test('KCOV_BODY_LIMIT: JSON and binary bodies past it are 413 problems and change nothing', async (t) => {
  const app = await makeApp(t, { KCOV_BODY_LIMIT: '1024' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 512);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);
  expectProblem(t, await c.binary(1, Buffer.alloc(1032)), 413, 'E2BIG');
  const big = JSON.stringify({ pcs: Array.from({ length: 300 }, (_, i) => i) });
  const res = await app.inject({ method: 'POST', url: '/v1/kernels/default/threads/1/events', headers: { 'content-type': 'application/json' }, payload: big });
  expectProblem(t, res, 413, 'E2BIG');
  t.equal((await c.cover(fd)).count, 0);
  t.equal((await c.binary(1, pcs(1, 2))).statusCode, 200, 'a body within the limit passes');
});

t.test('KCOV_TOKEN: bearer auth on every route but /healthz and /readyz', async (t) => {
  const app = await makeApp(t, { KCOV_TOKEN: 's3cret' });
  const get = (url: string, authorization?: string) =>
    app.inject({ method: 'GET', url, headers: authorization === undefined ? {} : { authorization } });
  for (const url of ['/v1/kernels', '/metrics', '/openapi.json', '/v1/kernels/default/descriptors', '/no/such/route']) {
    const res = await get(url);
    expectProblem(t, res, 401, 'EACCES');
    t.equal(res.headers['www-authenticate'], 'Bearer realm="kcovd"', `${url}: WWW-Authenticate`);
  }
  for (const bad of ['Bearer s3cre', 'Bearer s3cretx', 'Basic s3cret', 'Bearer', 'bearer  wrong']) {
    const res = await get('/v1/kernels', bad);
    expectProblem(t, res, 401, 'EACCES');
  }
  t.match(String((await get('/v1/kernels', 'Bearer nope')).headers['www-authenticate']), /error="invalid_token"/);
  t.equal((await get('/healthz')).statusCode, 200);
  t.equal((await get('/readyz')).statusCode, 200);
  t.equal((await get('/v1/kernels', 'Bearer s3cret')).statusCode, 200);
  t.equal((await get('/v1/kernels', 'bearer s3cret')).statusCode, 200, 'the scheme is case-insensitive (RFC 7235)');
  const res = await app.inject({ method: 'POST', url: '/v1/kernels/default/descriptors', payload: {} });
  expectProblem(t, res, 401, 'EACCES');
  t.equal(app.engine.kernel('default').descriptors.size, 0, 'a refused request changes nothing');
});

t.test('x-request-id is honoured and echoed; a bad one is replaced', async (t) => {
  const app = await makeApp(t);
  const a = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'job-42:step.7' } });
  t.equal(a.headers['x-request-id'], 'job-42:step.7');
  const b = await app.inject({ method: 'GET', url: '/v1/kernels/nope', headers: { 'x-request-id': 'x'.repeat(500) } });
  t.match(String(b.headers['x-request-id']), /^[0-9a-f-]{36}$/, 'too long: a fresh UUID');
  t.equal(b.statusCode, 404, 'problems carry it too');
  const c = await app.inject({ method: 'GET', url: '/healthz' });
  t.match(String(c.headers['x-request-id']), /^[0-9a-f-]{36}$/);
});

t.test('/metrics: records per kernel, areas, memory, bytes and latency per route', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 4);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);
  await c.binary(1, pcs(1, 2, 3, 4, 5));
  await c.binary(2, pcs(9));
  // Reading the union folds what is pending (otherwise a background slice does it at some point).
  await app.inject({ method: 'GET', url: '/v1/kernels/default/cover' });
  const cover = JSON.parse((await app.inject({ method: 'GET', url: '/v1/kernels' })).body).memory.by.cover as number;
  t.ok(cover > 0, 'the union of the three PCs is charged');
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  t.equal(res.statusCode, 200);
  t.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const m = res.body;
  t.match(m, /kcovd_records_total\{kernel="default",outcome="accepted"\} 3\n/);
  t.match(m, /kcovd_records_total\{kernel="default",outcome="dropped"\} 2\n/);
  t.match(m, /kcovd_records_total\{kernel="default",outcome="ignored"\} 1\n/);
  t.match(m, /kcovd_areas\{kernel="default"\} 1\n/);
  t.match(m, /kcovd_memory_bytes\{kernel="default"\} 32\n/);
  // The area, the descriptor, the two threads that ran (tids 1 and 2) and the cover union.
  t.match(m, new RegExp(`kcovd_memory_used_bytes ${32 + COST.descriptor + 2 * COST.thread + cover}\n`));
  t.match(m, /kcovd_http_request_bytes_total\{route="\/v1\/kernels\/:kernel\/threads\/:tid\/events"\} 48\n/);
  t.match(m, /kcovd_http_request_duration_seconds_count\{method="POST",route="\/v1\/kernels\/:kernel\/descriptors\/:fd\/ioctl\/:cmd",status="200"\} 2\n/);
  t.match(m, /kcovd_http_response_bytes_total\{route=/);
  // Metrics live per app: a second app starts from zero.
  const other = await makeApp(t);
  t.match((await other.inject({ method: 'GET', url: '/metrics' })).body, /kcovd_memory_used_bytes 0\n/);
});

t.test('long-poll: answers as soon as the count moves, or at the timeout unchanged', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_WAIT: '2000' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);

  let t0 = Date.now();
  const quiet = json(await c.coverage(fd, 'application/json', '?wait=150&since=0'));
  t.ok(Date.now() - t0 >= 140, 'waited the whole timeout');
  t.equal(quiet.count, 0, 'unchanged area');

  t0 = Date.now();
  const poll = c.coverage(fd, 'application/json', '?wait=1900&since=0');
  setTimeout(() => void c.events(1, { pcs: [0x11, 0x22] }), 50);
  const woke = json(await poll);
  t.ok(Date.now() - t0 < 1500, 'answered on the change, not at the timeout');
  t.same(woke.pcs, ['0x11', '0x22']);

  t0 = Date.now();
  t.equal(json(await c.coverage(fd, 'application/json', '?wait=1900&since=5')).count, 2, 'count differs from since: at once');
  t.ok(Date.now() - t0 < 500);

  t0 = Date.now();
  const capped = await c.coverage(fd, 'application/json', '?wait=3600000&since=2');
  t.equal(capped.statusCode, 200);
  t.ok(Date.now() - t0 < 2600, 'a wait past KCOV_MAX_WAIT is capped');

  const closing = c.coverage(fd, 'application/json', '?wait=1900');
  setTimeout(() => void c.close(fd), 30);
  const t1 = Date.now();
  expectProblem(t, await closing, 404, 'EBADF');
  t.ok(Date.now() - t1 < 1500, 'closing the fd wakes the poll, which answers as the route now would');

  expectProblem(t, await c.coverage(fd, 'application/json', '?wait=-1'), 400, 'EINVAL');
  expectProblem(t, await c.coverage(fd, 'application/json', '?wait=1&since=abc'), 400, 'EINVAL');
});

t.test('long-poll: closing the app answers every poll at once; /readyz says 503 meanwhile', async (t) => {
  const app = await makeApp(t, { KCOV_MAX_WAIT: '10000' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  const t0 = Date.now();
  const poll = c.coverage(fd, 'application/json', '?wait=9000');
  await new Promise((r) => setTimeout(r, 30));
  const closed = app.close();
  const res = await poll;
  t.equal(app.appState.draining, true, 'preClose marked the app draining');
  t.equal(res.statusCode, 200);
  t.ok(Date.now() - t0 < 3000, 'not held until the timeout');
  await closed;
});

t.test('draining: new requests get 503 problems, /healthz and /readyz still answer', async (t) => {
  const app = await makeApp(t);
  app.appState.draining = true;
  const res = await app.inject({ method: 'GET', url: '/v1/kernels' });
  t.equal(res.statusCode, 503);
  t.equal(json(res).errno, 'EBUSY');
  t.equal(res.headers.connection, 'close');
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
});
