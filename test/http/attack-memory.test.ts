/**
 * Attacks on memory through the HTTP layer, against the real server with
 * KCOV_MEMORY_LIMIT=256M: slow uploads, invalid bodies, unread snapshots.
 * Each case: RSS stays under KCOV_MEMORY_LIMIT + 128 MiB, /healthz answers
 * within 1 s while it runs, and the service is up after it.
 */
import net from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import t from 'tap';
import { chunkFrame, healthzBound, healthzMs, http, MEMORY_LIMIT, raw, RSS_ALLOWANCE, startServer, type Server } from './attack-server.js';

const MiB = 1024 * 1024;
const CEILING = MEMORY_LIMIT + RSS_ALLOWANCE;

/** /healthz latencies sampled every 100 ms until `until` settles. */
async function healthzDuring<T>(port: number, until: Promise<T>): Promise<{ value: T; worst: number }> {
  let worst = 0;
  let over = false;
  const sampler = (async () => {
    while (!over) {
      worst = Math.max(worst, await healthzMs(port, 15_000));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const value = await until;
  over = true;
  await sampler;
  return { value, worst };
}

function bounded(t: Tap, s: Server, worst: number, what: string): void {
  t.ok(s.peak() < CEILING, `${what}: peak RSS ${(s.peak() / MiB).toFixed(0)} MiB < ${CEILING / MiB} MiB`);
  const bound = healthzBound();
  t.ok(worst < bound, `${what}: /healthz within ${bound} ms during the attack (worst ${worst} ms)`);
}

interface Tap {
  ok(...args: any[]): unknown;
  fail(...args: any[]): unknown;
  equal(...args: any[]): unknown;
}

/** Connect, send headers, then `bytes` of body as fast as the server takes them; never finish. Resolves with what the server answered (or '' if nothing) once it stops taking bytes. */
function stalledUpload(port: number, headers: string, bytes: number, chunked: boolean): Promise<{ sock: net.Socket; reply: string; sent: number }> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let reply = '';
    let sent = 0;
    let settled = false;
    const settle = () => {
      if (settled) return;
      settled = true;
      resolve({ sock, reply, sent });
    };
    const chunk = Buffer.alloc(256 * 1024, 0x11);
    const frame = chunked ? chunkFrame(chunk) : chunk;
    const pump = () => {
      while (sent < bytes && !sock.destroyed) {
        sent += chunk.length;
        if (!sock.write(frame)) return void sock.once('drain', pump);
      }
      // All sent but the last bytes: the body stays unfinished; wait to see the server hold it.
      setTimeout(settle, 300);
    };
    sock.on('connect', () => {
      sock.write(headers);
      pump();
    });
    sock.on('data', (d: Buffer) => {
      reply += d.toString('latin1');
    });
    sock.on('error', () => settle());
    sock.on('close', () => settle());
    // A server that neither reads nor answers.
    setTimeout(settle, 8000);
  });
}

t.test('16 stalled uploads of 60 MiB each: the in-flight budget sheds them with 503 EBUSY', async (t) => {
  const s = await startServer();
  t.teardown(() => s.stop());
  for (const chunked of [false, true]) {
    s.resetPeak();
    const head = http('POST', '/v1/kernels/default/threads/1/events', chunked
      ? { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' }
      : { 'content-type': 'application/octet-stream', 'content-length': 60 * MiB });
    const attack = Promise.all(Array.from({ length: 16 }, () => stalledUpload(s.port, head, 60 * MiB - 256 * 1024, chunked)));
    const { value: uploads, worst } = await healthzDuring(s.port, attack);
    const shed = uploads.filter((u) => /^HTTP\/1\.1 503/.test(u.reply));
    // How many are shed depends on timing (a stalled upload cut at KCOV_REQUEST_TIMEOUT frees its
    // share for a later one); the bound that matters is RSS, below. Two fit the 128M in-flight budget.
    t.ok(shed.length >= 2, `${chunked ? 'chunked' : 'Content-Length'}: uploads past the budget are shed (${shed.length} of 16)`);
    t.notOk(uploads.some((u) => /^HTTP\/1\.1 2/.test(u.reply)), 'no unfinished upload is accepted');
    t.ok(shed.every((u) => /retry-after: 1/i.test(u.reply) && /"errno":"EBUSY"/.test(u.reply)), '503 EBUSY with Retry-After');
    bounded(t, s, worst, chunked ? 'chunked uploads' : 'Content-Length uploads');
    for (const u of uploads) u.sock.destroy();
    await new Promise((r) => setTimeout(r, 200));
    const kernels = await raw(s.port, http('GET', '/v1/kernels'));
    t.equal(kernels.status, 200, 'up after it');
    t.equal(JSON.parse(kernels.body).memory.by.bodies, 0, 'every byte charged for the uploads is released');
  }
});

t.test('16 stalled gzip, deflate and br uploads that decode to 60 MiB each: charged as they inflate, shed with 503 EBUSY', async (t) => {
  const plain = Buffer.alloc(60 * MiB - 256 * 1024, 0x11);
  const codings = { gzip: gzipSync(plain), deflate: deflateSync(plain), br: brotliCompressSync(plain) };
  for (const [coding, whole] of Object.entries(codings)) {
    // A server each: what one coding's shed uploads leave for the GC is not the next one's attack.
    const s = await startServer();
    t.teardown(() => s.stop());
    // All but the stream's last bytes: the decoder gives out (nearly) all 60 MiB and waits for the end.
    const body = whole.subarray(0, whole.length - 16);
    const head = http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-encoding': coding, 'content-length': whole.length });
    const attack = Promise.all(Array.from({ length: 16 }, () => new Promise<{ sock: net.Socket; reply: string }>((resolve) => {
      const sock = net.connect(s.port, '127.0.0.1');
      let reply = '';
      sock.on('connect', () => sock.write(Buffer.concat([Buffer.from(head), body])));
      sock.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
      const done = () => resolve({ sock, reply });
      sock.on('error', done);
      sock.on('close', done);
      setTimeout(done, 4000);
    })));
    const { value: uploads, worst } = await healthzDuring(s.port, attack);
    const shed = uploads.filter((u) => /^HTTP\/1\.1 503/.test(u.reply));
    // 128M of in-flight budget holds two decoded bodies; the rest are shed as they inflate past it.
    t.ok(shed.length >= 10, `${coding}: uploads past the in-flight budget are shed (${shed.length} of 16)`);
    t.notOk(uploads.some((u) => /^HTTP\/1\.1 2/.test(u.reply)), 'no unfinished upload is accepted');
    t.ok(shed.every((u) => /retry-after: 1/i.test(u.reply) && /"errno":"EBUSY"/.test(u.reply)), '503 EBUSY with Retry-After');
    bounded(t, s, worst, `${coding} uploads`);
    for (const u of uploads) u.sock.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const kernels = await raw(s.port, http('GET', '/v1/kernels'));
    t.equal(kernels.status, 200, 'up after it');
    t.equal(JSON.parse(kernels.body).memory.by.bodies, 0, 'every byte charged for the uploads is released');
    await s.stop();
  }
});

t.test('2 MiB bodies of invalid list elements are 400 in about the time of reading them', async (t) => {
  const s = await startServer();
  t.teardown(() => s.stop());
  const n = Math.floor((2 * MiB) / 3);
  const bodies = [
    ['/v1/kernels/default/threads/1/events', `{"cmps":[${Array(n).fill('{}').join(',')}]}`],
    ['/v1/kernels/default/threads/1/events', `{"pcs":[${Array(n).fill('"x"').join(',').slice(0, 2 * MiB)}]}`],
    ['/v1/kernels/default/threads/1/events', `{"switches":[{"val":1,"size":8,"pc":1,"cases":[${Array(n).fill('[]').join(',')}]}]}`],
    ['/v1/kernels', `{"dialect":"linux","config":{${Array.from({ length: n / 4 }, (_, i) => `"k${i}":1`).join(',')}}}`],
    ['/v1/kernels/default/threads/7', `{${Array.from({ length: n / 4 }, (_, i) => `"k${i}":1`).join(',')}}`],
  ] as const;
  const run = Promise.all(bodies.flatMap(([path, body]) => [0].map(() => raw(s.port, http(path === '/v1/kernels/default/threads/7' ? 'PUT' : 'POST', path, { 'content-type': 'application/json' }, body), 20_000))));
  const { value: replies, worst } = await healthzDuring(s.port, run);
  // Parsed JSON costs JSON_COST times its length: a few are validated at once, the rest shed.
  const refused = replies.filter((r) => r.status === 400);
  t.ok(refused.length >= 1, `some are answered 400 (${refused.length} of ${replies.length})`);
  for (const r of replies) {
    t.ok(r.status === 400 || (r.status === 503 && r.headers['retry-after'] !== undefined), `400, or 503 with Retry-After (${r.status} ${r.body.slice(0, 120)})`);
    t.ok(r.body.length < 2000, 'a short problem: the first few issues only');
  }
  bounded(t, s, worst, 'invalid bodies');
  t.ok(await healthzMs(s.port) < healthzBound(), 'up after it');
});

// 96 MiB rather than the 128 MiB of the report: area and one copy then leave room under the
// ceiling for node itself (~80 MiB) and the heap the fill leaves grown; 128 MiB peaks at ~372 MiB.
/** A 96 MiB area (fd 3, thread 1) filled with 12Mi distinct PCs, 4 MiB at a time (big bodies would leave the heap grown). */
async function fillDistinct(t: Tap, port: number): Promise<void> {
  const words = (96 * MiB) / 8;
  const H = { 'content-type': 'application/json' };
  t.equal((await raw(port, http('POST', '/v1/kernels/default/descriptors', H, '{}'))).status, 201);
  t.equal((await raw(port, http('POST', '/v1/kernels/default/descriptors/3/ioctl/KCOV_INIT_TRACE', H, JSON.stringify({ tid: 1, arg: words })))).status, 200);
  t.equal((await raw(port, http('POST', '/v1/kernels/default/descriptors/3/ioctl/KCOV_ENABLE', H, JSON.stringify({ tid: 1, arg: 'pc' })))).status, 200);
  const parts = 24;
  for (let part = 0; part < parts; part++) {
    const body = Buffer.alloc(part < parts - 1 ? 4 * MiB : 4 * MiB - 8);
    const v = new BigUint64Array(body.buffer, body.byteOffset, body.length / 8);
    for (let i = 0; i < v.length; i++) v[i] = 0xffffffff81000000n + BigInt((part * (4 * MiB / 8) + i) * 4);
    const r = await raw(port, (sock) => sock.write(Buffer.concat([Buffer.from(http('POST', '/v1/kernels/default/threads/1/events', { 'content-type': 'application/octet-stream', 'content-length': body.length })), body])), 20_000);
    if (r.status !== 200) t.fail(`filled part ${part} (${r.body.slice(0, 100)})`);
  }
}

t.test('12Mi distinct PCs: the cover union stops at KCOV_COVER_LIMIT, counts what it lost, and leaves room for areas', async (t) => {
  const s = await startServer({ KCOV_BODY_LIMIT: '64M' });
  t.teardown(() => s.stop());
  // The union folds in the background while the area fills and after.
  const { worst } = await healthzDuring(s.port, (async () => {
    await fillDistinct(t, s.port);
    await new Promise((r) => setTimeout(r, 3000));
  })());
  bounded(t, s, worst, 'a union fed distinct PCs');
  const k = JSON.parse((await raw(s.port, http('GET', '/v1/kernels'))).body);
  t.ok(k.memory.by.cover <= MEMORY_LIMIT / 8, `the union holds ${k.memory.by.cover} bytes, at most ⅛ of the limit`);
  const m = (await raw(s.port, http('GET', '/metrics'))).body;
  const lost = Number(/kcovd_cover_lost_total\{kernel="default"\} (\d+)/.exec(m)?.[1]);
  t.ok(lost > 0, `what it could not hold is counted (${lost} lost)`);
  const H = { 'content-type': 'application/json' };
  t.equal((await raw(s.port, http('POST', '/v1/kernels/default/descriptors', H, '{}'))).status, 201);
  t.equal((await raw(s.port, http('POST', '/v1/kernels/default/descriptors/4/ioctl/KCOV_INIT_TRACE', H, JSON.stringify({ tid: 2, arg: (32 * MiB) / 8 })))).status, 200, 'a 32 MiB area still fits');
});

t.test('six readers that never read a snapshot of a 96 MiB area hold a bounded buffer each', async (t) => {
  // One server a format: a copy released by one reader is freed at the next GC, not at once.
  for (const accept of ['application/json', 'text/plain', 'application/octet-stream']) {
    // The cover union off: 12Mi distinct PCs would fill it (the next case), here the snapshot copies alone are measured.
    const s = await startServer({ KCOV_BODY_LIMIT: '64M', KCOV_COVER: 'off' });
    t.teardown(() => s.stop());
    await fillDistinct(t, s.port);
    s.resetPeak();
    // Six readers ask and then read nothing.
    const readers = Array.from({ length: 6 }, () => {
      const sock = net.connect(s.port, '127.0.0.1');
      sock.on('error', () => {});
      sock.write(http('GET', '/v1/kernels/default/descriptors/3/coverage', { accept }));
      sock.pause();
      return sock;
    });
    const { worst } = await healthzDuring(s.port, new Promise((r) => setTimeout(r, 2500)));
    bounded(t, s, worst, `unread ${accept} snapshots`);
    for (const r of readers) r.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const after = await raw(s.port, http('GET', '/v1/kernels'));
    t.equal(after.status, 200, 'up after it');
    t.equal(JSON.parse(after.body).memory.by.snapshots, 0, 'the snapshot copies are released once the readers leave');
    await s.stop();
  }
});
