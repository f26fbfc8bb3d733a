/**
 * Shutdown of the real server with a stalled upload in flight (docs/limits.md,
 * "Shutdown"): during KCOV_SHUTDOWN_GRACE it still accepts, /readyz is 503 and
 * other new requests 503 EBUSY with Retry-After; then it stops accepting; at
 * KCOV_SHUTDOWN_TIMEOUT the stalled upload is answered 503; the exit code is 0.
 */
import net from 'node:net';
import t from 'tap';
import { http, MEMORY_LIMIT, parseReply, raw, RSS_ALLOWANCE, startServer } from './attack-server.js';

t.test('SIGTERM with a stalled upload: /readyz 503 while draining, the upload answered 503, exit 0', async (t) => {
  const s = await startServer({ KCOV_SHUTDOWN_GRACE: '1000', KCOV_SHUTDOWN_TIMEOUT: '3000' });
  t.teardown(() => s.stop());
  const stalled = new Promise<string>((resolve) => {
    const sock = net.connect(s.port, '127.0.0.1');
    let text = '';
    sock.on('data', (d: Buffer) => { text += d.toString('latin1'); });
    sock.on('close', () => resolve(text));
    sock.on('error', () => {});
    sock.write(http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-length': 1 << 20 }));
    sock.write(Buffer.alloc(4096));
  });
  await new Promise((r) => setTimeout(r, 200));
  const signalled = Date.now();
  s.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 200));

  const ready = await raw(s.port, http('GET', '/readyz'));
  t.equal(ready.status, 503, '/readyz is 503 during the drain');
  t.same(JSON.parse(ready.body), { ready: false, draining: true });
  const busy = await raw(s.port, http('GET', '/v1/kernels'));
  t.equal(busy.status, 503, 'a new request is 503');
  t.equal(JSON.parse(busy.body).errno, 'EBUSY');
  t.equal(busy.headers['retry-after'], '1', 'with Retry-After');
  t.equal((await raw(s.port, http('GET', '/healthz'))).status, 200, '/healthz stays 200');

  await new Promise((r) => setTimeout(r, 1200));
  const refused = await raw(s.port, http('GET', '/readyz'), 1000);
  t.ok(refused.closed && refused.status === 0, 'after the grace period new connections are refused');

  t.ok(s.peak() < MEMORY_LIMIT + RSS_ALLOWANCE, `peak RSS ${(s.peak() / 2 ** 20).toFixed(0)} MiB during the drain`);
  const reply = parseReply(await stalled);
  const answeredAfter = Date.now() - signalled;
  t.equal(reply?.status, 503, 'the stalled upload is answered 503');
  t.equal(reply && JSON.parse(reply.body).errno, 'EBUSY');
  t.equal(reply?.headers['retry-after'], '1');
  t.ok(answeredAfter >= 2800 && answeredAfter < 5000, `at the deadline (${answeredAfter} ms after SIGTERM)`);
  const { code } = await s.exited;
  t.equal(code, 0, 'exit code 0');
  t.match(s.log(), /"msg":"draining"/);
});
