/**
 * Load over a real socket (undici): many concurrent clients, each its own kcov
 * thread with its own descriptor, post deterministic PC streams and read them
 * back. Every PC must be in its own area exactly once and in order, up to the
 * area's capacity; past it, dropped and counted as dropped, never anything else.
 * Bounded: a fixed amount of work, a few seconds.
 */
import t from 'tap';
import { Pool } from 'undici';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';

const CLIENTS = 16;
const BATCHES = 30;
const PER_BATCH = 200;
const TOKEN = 'load-token';

/** Batch b of client c: PCs with hi = c + 1 and lo = the PC's sequence number. */
function batch(c: number, b: number): Buffer {
  const buf = Buffer.alloc(PER_BATCH * 8);
  for (let i = 0; i < PER_BATCH; i++) {
    buf.writeUInt32LE(b * PER_BATCH + i, i * 8);
    buf.writeUInt32LE(c + 1, i * 8 + 4);
  }
  return buf;
}

t.test(`${CLIENTS} concurrent clients over HTTP lose nothing and duplicate nothing`, async (t) => {
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2', KCOV_TOKEN: TOKEN }) });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  const pool = new Pool(`http://127.0.0.1:${addr.port}`, { connections: CLIENTS });
  t.teardown(async () => {
    await pool.close();
    await app.close();
  });
  const auth = { authorization: `Bearer ${TOKEN}` };

  const call = async (method: 'GET' | 'POST', path: string, body?: Buffer | object, accept = 'application/json') => {
    const headers: Record<string, string> = { ...auth, accept };
    let payload: Buffer | string | undefined;
    if (Buffer.isBuffer(body)) {
      headers['content-type'] = 'application/octet-stream';
      payload = body;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const res = await pool.request({ method, path, headers, body: payload });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${bytes.toString()}`);
    return { status: res.statusCode, bytes, json: () => JSON.parse(bytes.toString()) };
  };

  const total = BATCHES * PER_BATCH;
  const started = Date.now();
  const results = await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
    const tid = 1000 + c;
    // Half the clients get an area that holds everything, half one that fills part-way.
    const capacity = c % 2 === 0 ? total + 10 : Math.floor(total / 3) + c;
    const fd = (await call('POST', '/v1/kernels/default/descriptors', { tid })).json().fd as number;
    await call('POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: capacity + 1 });
    await call('POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' });
    let accepted = 0, dropped = 0, ignored = 0;
    for (let b = 0; b < BATCHES; b++) {
      const r = (await call('POST', `/v1/kernels/default/threads/${tid}/events?kind=pc`, batch(c, b))).json();
      accepted += r.accepted;
      dropped += r.dropped;
      ignored += r.ignored;
    }
    const area = (await call('GET', `/v1/kernels/default/descriptors/${fd}/coverage`, undefined, 'application/octet-stream')).bytes;
    return { c, capacity, accepted, dropped, ignored, area };
  }));
  const secs = (Date.now() - started) / 1000;
  t.comment(`${CLIENTS * (BATCHES + 4)} requests, ${CLIENTS * total} PCs in ${secs.toFixed(2)} s`);

  for (const r of results) {
    const want = Math.min(total, r.capacity);
    const count = r.area.readUInt32LE(0) + r.area.readUInt32LE(4) * 2 ** 32;
    t.equal(count, want, `client ${r.c}: count is min(sent, capacity)`);
    t.equal(r.accepted, want, `client ${r.c}: accepted = stored`);
    t.equal(r.dropped, total - want, `client ${r.c}: dropped only past capacity`);
    t.equal(r.ignored, 0, `client ${r.c}: nothing ignored`);
    let bad = -1;
    for (let i = 0; i < want; i++) {
      const at = (1 + i) * 8;
      if (r.area.readUInt32LE(at) !== i || r.area.readUInt32LE(at + 4) !== r.c + 1) {
        bad = i;
        break;
      }
    }
    t.equal(bad, -1, `client ${r.c}: record i is PC i of this client, in order, each once`);
  }
  const k = app.engine.kernel('default');
  t.equal(k.stats.accepted, results.reduce((s, r) => s + r.accepted, 0), 'kernel stats agree');
  t.same(app.engine.checkInvariants(), [], 'invariants hold after the load');
});
