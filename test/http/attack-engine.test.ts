/**
 * Attacks on what the engine holds, through the real server with
 * KCOV_MEMORY_LIMIT=256M: unique guards, Linux remotes, and failed requests
 * that leave threads behind. Each case stops early once RSS passes the
 * ceiling (so a regression fails fast instead of taking the machine down).
 */
import t from 'tap';
import { healthzBound, healthzMs, http, MEMORY_LIMIT, raw, RSS_ALLOWANCE, startServer } from './attack-server.js';

const MiB = 1024 * 1024;
const CEILING = MEMORY_LIMIT + RSS_ALLOWANCE;
const H = { 'content-type': 'application/json' };

const post = (port: number, path: string, body: unknown) => raw(port, http('POST', path, H, JSON.stringify(body)), 20_000);

// The guard table is charged as it grows (old and new while both live, the old one given back at
// once), a refused growth costs no ENOMEM per PC, and a batch is read from its chunks in place. What
// the budget does not count at a full budget is node itself, V8's heap and socket chunks waiting for a
// GC: peak 356-373 MiB (docs/limits.md, "Unique guards").
t.test('KCOV_UNIQUE_ENABLE guards: a million distinct PCs in kernel after kernel are charged or refused', async (t) => {
  const s = await startServer({ KCOV_MAX_KERNELS: '16' });
  t.teardown(() => s.stop());
  const pcs = Buffer.alloc(MiB * 8);
  const v = new BigUint64Array(pcs.buffer, pcs.byteOffset, MiB);
  for (let i = 0; i < MiB; i++) v[i] = 0xffffffff81000000n + BigInt(i * 4);
  let refused = 0;
  let worst = 0;
  for (let k = 0; k < 15 && s.peak() < CEILING; k++) {
    const name = `u${k}`;
    const created = await post(s.port, '/v1/kernels', { name, dialect: 'linux' });
    if (created.status !== 201) { refused++; break; }
    const base = `/v1/kernels/${name}`;
    if ((await post(s.port, `${base}/descriptors`, { tid: 1 })).status !== 201) { refused++; break; }
    const init = await post(s.port, `${base}/descriptors/3/ioctl/KCOV_INIT_TRACE`, { tid: 1, arg: 1 << 16 });
    if (init.status !== 200) { refused++; break; }
    t.equal((await post(s.port, `${base}/descriptors/3/ioctl/KCOV_UNIQUE_ENABLE`, { tid: 1, arg: 1 << 14 })).status, 200);
    const r = await raw(s.port, (sock) => sock.write(Buffer.concat([Buffer.from(http('POST', `${base}/threads/1/events`, { 'content-type': 'application/octet-stream', 'content-length': pcs.length })), pcs])), 30_000);
    worst = Math.max(worst, await healthzMs(s.port));
    if (r.status !== 200) {
      // 507 when the engine cannot charge it; 503 with Retry-After when the body itself cannot be admitted.
      t.ok(r.status === 507 || (r.status === 503 && r.headers['retry-after'] === '1'), `a batch that cannot be charged is refused (${r.status} ${r.body.slice(0, 120)})`);
      refused++;
      break;
    }
  }
  t.ok(s.peak() < CEILING, `peak RSS ${(s.peak() / MiB).toFixed(0)} MiB < ${CEILING / MiB} MiB`);
  t.ok(worst < healthzBound() * 2, `/healthz between batches (worst ${worst} ms)`);
  const list = await raw(s.port, http('GET', '/v1/kernels'));
  t.equal(list.status, 200, 'up after it');
  t.comment(`refused: ${refused}; memory ${JSON.stringify(JSON.parse(list.body).memory)}`);
});

t.test('Linux KCOV_REMOTE_ENABLE: remotes stop at KCOV_MAX_REMOTES, RSS bounded', async (t) => {
  const s = await startServer({ KCOV_MAX_REMOTES: '4096' });
  t.teardown(() => s.stop());
  let registered = 0;
  let status = 0;
  for (let fd = 3; fd < 3 + 1024 && s.peak() < CEILING; fd++) {
    if ((await post(s.port, '/v1/kernels/default/descriptors', { tid: fd })).status !== 201) break;
    await post(s.port, `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid: fd, arg: 64 });
    const handles = Array.from({ length: 256 }, (_, i) => `0x01000000${((fd << 8) | i).toString(16).padStart(8, '0')}`);
    const r = await post(s.port, `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_REMOTE_ENABLE`, { tid: fd, arg: { trace_mode: 'pc', area_size: 1024, handles } });
    status = r.status;
    if (r.status !== 200) break;
    registered += 256;
  }
  t.equal(status, 507, 'the registration past the cap is 507 ENOMEM');
  t.ok(registered <= 4096, `at most KCOV_MAX_REMOTES remotes (${registered})`);
  t.ok(s.peak() < CEILING, `peak RSS ${(s.peak() / MiB).toFixed(0)} MiB < ${CEILING / MiB} MiB`);
  t.ok(await healthzMs(s.port) < healthzBound(), 'up after it');
});

t.test('failed requests leave no threads behind: KCOV_MAX_THREADS stays free for real ones', async (t) => {
  const s = await startServer({ KCOV_MAX_THREADS: '16' });
  t.teardown(() => s.stop());
  await post(s.port, '/v1/kernels/default/descriptors', { tid: 1 });
  for (let tid = 100; tid < 140; tid++) {
    // 400 (bad size), 400 (bad mode before any buffer), 409/400 on a fd this thread cannot use.
    await post(s.port, '/v1/kernels/default/descriptors/3/ioctl/KCOV_INIT_TRACE', { tid, arg: 1 });
    await post(s.port, '/v1/kernels/default/descriptors/3/ioctl/KCOV_ENABLE', { tid, arg: 7 });
    await post(s.port, '/v1/kernels/default/descriptors/99/ioctl/KCOV_ENABLE', { tid, arg: 0 });
  }
  const threads = JSON.parse((await raw(s.port, http('GET', '/v1/kernels/default/threads'))).body).threads as unknown[];
  t.ok(threads.length <= 1, `no thread left by a failed request (${threads.length})`);
  const real = await raw(s.port, http('PUT', '/v1/kernels/default/threads/5000', H, '{}'));
  t.ok(real.status === 200 || real.status === 201, `a real thread creation succeeds (${real.status} ${real.body.slice(0, 100)})`);
});
