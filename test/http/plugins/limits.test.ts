/**
 * src/http/plugins/limits.ts with errors.ts closeAfter: a body refused before it is
 * read, or part way through, is answered, and the answer reaches a client that is
 * still sending.
 */
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import t from 'tap';
import { listenApp } from '../../live.js';
import { chunkFrame, http, raw, startServer, type RawReply } from '../attack-server.js';

const MiB = 1024 * 1024;

/** Request line, headers and body in one write, as a client that does not wait for an answer sends them. */
const inOneGo = (port: number, head: string, body: Buffer): Promise<RawReply> =>
  raw(port, (s) => s.write(Buffer.concat([Buffer.from(head), body])), 10_000);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Tap = { teardown(fn: () => unknown): void; match(...args: any[]): unknown };

t.test('a batch past KCOV_INFLIGHT_LIMIT written in one go gets its 503, not a reset', async (t) => {
  // A server of its own process: in this one the client never races the server's close.
  const server = await startServer({ KCOV_INFLIGHT_LIMIT: '1M' });
  t.teardown(() => server.stop());
  const port = server.port;
  const body = Buffer.alloc(8 * MiB);
  const head = http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-length': body.length });
  for (let i = 0; i < 10; i++) {
    const r = await inOneGo(port, head, body);
    t.equal(r.status, 503, `try ${i}: 503 (${r.closed ? 'connection closed' : 'reply read'} ${r.body.slice(0, 80)})`);
    t.equal(r.headers['retry-after'], '1');
    t.equal(r.headers.connection, 'close', 'the connection cannot carry another request');
    t.match(r.body, /"errno":"EBUSY"/);
  }
});

t.test('a JSON body past KCOV_JSON_LIMIT written in one go gets its 413, not a reset', async (t) => {
  const { port } = await listenApp(t, { KCOV_JSON_LIMIT: '64K' });
  const body = Buffer.from(JSON.stringify({ pcs: Array.from({ length: 400_000 }, (_, i) => i) }));
  const head = http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/json', 'content-length': body.length });
  const r = await inOneGo(port, head, body);
  t.equal(r.status, 413, r.body.slice(0, 120));
  t.match(r.body, /"errno":"E2BIG"/);
});

t.test('a body refused mid-way (chunked, gzip, chunked JSON) written in one go gets its answer', async (t) => {
  const server = await startServer({ KCOV_INFLIGHT_LIMIT: '1M', KCOV_JSON_LIMIT: '16K' });
  t.teardown(() => server.stop());
  const chunked = (body: Buffer): Buffer => {
    const parts: Buffer[] = [];
    for (let at = 0; at < body.length; at += 64 * 1024) parts.push(chunkFrame(body.subarray(at, at + 64 * 1024)));
    return Buffer.concat([...parts, Buffer.from('0\r\n\r\n')]);
  };
  const path = '/v1/kernels/default/threads/1/events';
  const octet = { 'content-type': 'application/octet-stream' };
  const json = Buffer.from(JSON.stringify({ pcs: Array.from({ length: 400_000 }, (_, i) => i) }));
  const gzipped = gzipSync(Buffer.alloc(32 * MiB));
  const cases = [
    // Charged chunk by chunk: the budget runs out after 1 MiB of the 32.
    { what: 'chunked', status: 503, errno: 'EBUSY', head: http('POST', path, { ...octet, 'transfer-encoding': 'chunked' }), body: chunked(Buffer.alloc(32 * MiB)) },
    // Charged by its decoded bytes as they inflate.
    { what: 'gzip', status: 503, errno: 'EBUSY', head: http('POST', path, { ...octet, 'content-encoding': 'gzip', 'content-length': gzipped.length }), body: gzipped },
    // No Content-Length to refuse it by: cut at KCOV_JSON_LIMIT as it arrives.
    { what: 'chunked JSON', status: 413, errno: 'E2BIG', head: http('POST', path, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }), body: chunked(json) },
  ];
  for (const c of cases) {
    for (let i = 0; i < 5; i++) {
      const r = await inOneGo(server.port, c.head, c.body);
      t.equal(r.status, c.status, `${c.what}, try ${i}: ${c.status} (${r.closed ? 'connection closed' : 'reply read'} ${r.body.slice(0, 80)})`);
      t.match(r.body, new RegExp(`"errno":"${c.errno}"`));
    }
  }
});

/** After a refused upload, keep sending `every` bytes each 50 ms; milliseconds from the reply to the server's close. */
async function cutOff(t: Tap, port: number, every: number): Promise<number> {
  const head = http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-length': 64 * MiB });
  // No close on the server's FIN: only the server's own bound ends it.
  const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  t.teardown(() => s.destroy());
  let reply = '';
  let replied = 0;
  s.on('data', (d: Buffer) => {
    reply += d.toString('latin1');
    if (replied === 0) replied = Date.now();
  });
  s.write(Buffer.concat([Buffer.from(head), Buffer.alloc(64 * 1024)]));
  const more = setInterval(() => s.write(Buffer.alloc(every)), 50);
  t.teardown(() => clearInterval(more));
  await new Promise((resolve) => { s.on('close', resolve); s.on('error', resolve); });
  clearInterval(more);
  t.match(reply, /^HTTP\/1\.1 503 /, 'the reply arrived first');
  return Date.now() - replied;
}

t.test('after a refusal the server stops reading and closes after LINGER_MS, however fast the client sends', async (t) => {
  const { port } = await listenApp(t, { KCOV_INFLIGHT_LIMIT: '1M' });
  for (const every of [16 * 1024, 4 * MiB]) {
    const ms = await cutOff(t, port, every);
    t.ok(ms >= 1800 && ms < 8000, `${every} bytes every 50 ms: cut off ${ms} ms after the reply (LINGER_MS is 2 s)`);
  }
});
