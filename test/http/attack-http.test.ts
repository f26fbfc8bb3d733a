/**
 * Attacks on the HTTP layer of the real server: every failure node or Fastify
 * finds before a route runs is problem+json with an errno and a request id
 * (API.md "Additions"), and slow clients are cut at the bounds the README states.
 */
import t from 'tap';
import { healthzBound, healthzMs, http, MEMORY_LIMIT, raw, RSS_ALLOWANCE, startServer, type RawReply } from './attack-server.js';

const CEILING = MEMORY_LIMIT + RSS_ALLOWANCE;

interface Assert {
  equal(...args: any[]): unknown;
  match(...args: any[]): unknown;
  ok(...args: any[]): unknown;
}

function isProblem(t: Assert, r: RawReply, status: number, errno: string): void {
  t.equal(r.status, status, `status ${status} (${r.body.slice(0, 200)})`);
  t.match(r.headers['content-type'] ?? '', /^application\/problem\+json/, 'problem+json');
  let p: { errno?: string; status?: number; request_id?: string; code?: number } = {};
  try { p = JSON.parse(r.body); } catch { /* checked below */ }
  t.equal(p.errno, errno, `errno ${errno}`);
  t.equal(p.status, status, 'status in the body');
  t.equal(typeof p.code, 'number', 'errno number');
  t.ok(typeof p.request_id === 'string' && p.request_id === r.headers['x-request-id'], 'request id in the body and the x-request-id header');
}

t.test('HTTP-level failures are problem+json with an errno and the request id', async (t) => {
  const s = await startServer({ KCOV_BODY_LIMIT: '1M', KCOV_REQUEST_TIMEOUT: '2000', KCOV_HEADERS_TIMEOUT: '1000' });
  t.teardown(() => s.stop());
  const { port } = s;
  isProblem(t, await raw(port, http('GET', '/nope')), 404, 'ENOENT');
  const m = await raw(port, http('PATCH', '/v1/kernels'));
  isProblem(t, m, 405, 'EINVAL');
  t.match(m.headers.allow ?? '', /GET/, 'Allow names the methods of the path');
  t.match(m.headers.allow ?? '', /POST/);
  isProblem(t, await raw(port, http('DELETE', '/v1/kernels/default/threads/1/events')), 405, 'EINVAL');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'application/json', 'content-length': 2 * 1024 * 1024 })), 413, 'E2BIG');
  isProblem(t, await raw(port, http('GET', `/v1/kernels/${'k'.repeat(101)}`)), 414, 'ENAMETOOLONG');
  isProblem(t, await raw(port, http('GET', '/healthz', { 'x-big': 'a'.repeat(20_000) })), 431, 'ENAMETOOLONG');
  isProblem(t, await raw(port, `GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`), 431, 'ENAMETOOLONG');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, 'zz\r\n{}\r\n0\r\n\r\n')), 400, 'EINVAL');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'content-length': 2 }, '2\r\n{}\r\n0\r\n\r\n')), 400, 'EINVAL');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'application/json', 'content-length': 'x' }, '{}')), 400, 'EINVAL');
  isProblem(t, await raw(port, 'GET /healthz HTTP/1.1\r\n\r\n'), 400, 'EINVAL');
  isProblem(t, await raw(port, 'GARBAGE\r\n\r\n'), 400, 'EINVAL');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'text/csv' }, 'a,b')), 415, 'EINVAL');
  isProblem(t, await raw(port, http('POST', '/v1/kernels', { 'content-type': 'application/json' }, '{"dialect":')), 400, 'EINVAL');
  // A body longer than its Content-Length: the rest is read as the next request, which is garbage.
  const long = await raw(port, (sock) => sock.write(http('POST', '/v1/kernels/default/descriptors', { 'content-type': 'application/json', 'content-length': 2 }, '{}XXXX\r\n\r\n')));
  t.equal(long.status, 201, 'the declared body is served');
  t.ok(s.peak() < CEILING, `peak RSS ${(s.peak() / 2 ** 20).toFixed(0)} MiB < ${CEILING / 2 ** 20} MiB`);
  t.ok(await healthzMs(port) < healthzBound(), 'up after it');
});

t.test('slow clients are cut: headers at KCOV_HEADERS_TIMEOUT, the whole request at KCOV_REQUEST_TIMEOUT', async (t) => {
  const s = await startServer({ KCOV_REQUEST_TIMEOUT: '1500', KCOV_HEADERS_TIMEOUT: '800' });
  t.teardown(() => s.stop());
  const { port } = s;
  // Slow-loris headers: a byte at a time, never finished.
  const loris = raw(port, (sock) => {
    const text = 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: ';
    let i = 0;
    const tick = setInterval(() => {
      if (sock.destroyed) return clearInterval(tick);
      sock.write(i < text.length ? text[i++]! : 'a');
    }, 50);
  }, 6000);
  // A body trickled in, well past the request bound.
  const trickle = raw(port, (sock) => {
    sock.write(http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-length': 1 << 20 }));
    const tick = setInterval(() => {
      if (sock.destroyed) return clearInterval(tick);
      sock.write(Buffer.alloc(8));
    }, 50);
  }, 6000);
  const during = await healthzMs(port);
  t.ok(during < healthzBound(), `/healthz answers during the attack (${during} ms)`);
  const [a, b] = await Promise.all([loris, trickle]);
  isProblem(t, a, 408, 'ETIMEDOUT');
  t.ok(a.ms < 800 + 1500, `headers cut near KCOV_HEADERS_TIMEOUT (${a.ms} ms)`);
  isProblem(t, b, 408, 'ETIMEDOUT');
  t.ok(b.ms < 1500 + 1500, `the body cut near KCOV_REQUEST_TIMEOUT (${b.ms} ms)`);
  t.ok(s.peak() < CEILING, `peak RSS ${(s.peak() / 2 ** 20).toFixed(0)} MiB < ${CEILING / 2 ** 20} MiB`);
  t.ok(await healthzMs(port) < healthzBound(), 'up after it');
});
