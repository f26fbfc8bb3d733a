/** Cumulative coverage (/cover), syzkaller signal, and ?new=true, on one instance (no Redis). */
import t from 'tap';
import { syzHash, traceSignals } from '../../src/engine/cover/signal.js';
import { Engine } from '../../src/engine/engine.js';
import { loadConfig } from '../../src/config.js';
import { Client, cmps, json, makeApp, pcs } from '../helpers.js';

t.test('signal: hand-computed vector from syzkaller executor.cc hash() and write_signal<uint64>()', async (t) => {
  // hash(0): a = (0^61)^(0>>16) = 0x3d; a += a<<3 -> 0x225; a ^= a>>4 -> 0x207;
  // a *= 0x27d4eb2d -> 0xc0a8c83b (mod 2^32); a ^= a>>15 -> 0xc0a9496a.
  t.equal(syzHash(0), 0xc0a9496a);
  // hash(0x010): 0x2d, 0x195, 0x18c, 0x9d5bc99c, 0x9d5af32b.
  t.equal(syzHash(0x10), 0x9d5af32b);
  // hash(0x123): 0x11e, 0xa0e, 0xaae, 0x63e79a96, 0x63e75d59.
  t.equal(syzHash(0x123), 0x63e75d59);
  // Trace A, B, A with A = 0xffffffff81000010, B = 0xffffffff81000123; prev_pc starts at 0:
  //   sig0 = A ^ (hash(0x000) & 0xfff) = A ^ 0x96a = 0xffffffff8100097a
  //   sig1 = B ^ (hash(0x010) & 0xfff) = B ^ 0x32b = 0xffffffff81000208
  //   sig2 = A ^ (hash(0x123) & 0xfff) = A ^ 0xd59 = 0xffffffff81000d49
  const trace = new Uint32Array([0x81000010, 0xffffffff, 0x81000123, 0xffffffff, 0x81000010, 0xffffffff]);
  t.same([...traceSignals(trace)], [0x8100097a, 0xffffffff, 0x81000208, 0xffffffff, 0x81000d49, 0xffffffff]);
});

async function traced(t: { teardown(fn: () => unknown): void }, words = 64, mode = "pc") {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, words);
  await c.ok(fd, 'KCOV_ENABLE', 1, mode);
  return { app, c, fd };
}

function words(...values: bigint[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigUInt64LE(v, i * 8));
  return b;
}

async function union(c: Client, accept = 'application/json') {
  return c.app.inject({ method: 'GET', url: `${c.base}/cover`, headers: { accept } });
}

t.test('the union survives resets, re-reads and closes, sorted in every format', async (t) => {
  const { app, c, fd } = await traced(t);
  await c.binary(1, pcs(0x30, 0x10, 0x30));
  t.equal((await c.app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 0 } })).statusCode, 200);
  await c.binary(1, pcs(0x20));
  await c.coverage(fd, 'application/json', '?reset=true');
  await c.binary(1, words(0xffffffff81000000n));
  await c.ok(fd, 'KCOV_DISABLE', 1, 0);
  t.equal((await c.close(fd)).statusCode, 204);
  const j = json(await union(c));
  t.same(j.pcs, ['0x10', '0x20', '0x30', '0xffffffff81000000']);
  t.equal(j.count, 4);
  t.equal(j.source, 'local');
  t.equal(j.corpus, 'default');
  t.equal((await union(c, 'text/plain')).body, '0x10\n0x20\n0x30\n0xffffffff81000000\n');
  const bin = (await union(c, 'application/octet-stream')).rawPayload;
  t.equal(bin.length, 32);
  t.equal(bin.readBigUInt64LE(24), 0xffffffff81000000n, 'packed little-endian words, sorted');
  t.same(app.engine.checkInvariants(), []);
});

t.test('signal counts distinct edges across programs: the same trace twice adds nothing', async (t) => {
  const { c, fd } = await traced(t);
  const A = 0xffffffff81000010n, B = 0xffffffff81000123n;
  await c.binary(1, words(A, B, A));
  await c.coverage(fd, 'application/json', '?reset=true');
  t.equal(json(await union(c)).signal, 3, 'the vector above: three distinct signals');
  await c.binary(1, words(A, B, A));
  await c.coverage(fd, 'application/json', '?reset=true');
  t.equal(json(await union(c)).signal, 3, 'a second program with the same trace brings no new signal');
  await c.binary(1, words(B, A));
  t.equal(json(await union(c)).signal, 4, 'B first: B ^ hash(0) is a new signal; A after B is known');
});

t.test('CMP records contribute their PCs (and no signal)', async (t) => {
  const { c } = await traced(t, 64, 'cmp');
  await c.binary(1, cmps([1, 5, 6, 0x4000], [1, 7, 8, 0x4000], [3, 1, 2, 0x5000]), 'cmp');
  const j = json(await union(c));
  t.same(j.pcs, ['0x4000', '0x5000']);
  t.equal(j.signal, 0);
});

t.test('?new=true shows only new records, once; reset=true in the same step', async (t) => {
  const { app, c, fd } = await traced(t);
  await c.binary(1, pcs(0x10, 0x20, 0x10));
  const a = json(await c.coverage(fd, 'application/json', '?new=true'));
  t.same({ count: a.count, new: a.new, seen: a.seen, pcs: a.pcs }, { count: 3, new: 2, seen: 1, pcs: ['0x10', '0x20'] }, 'a PC repeated in one area is new once');
  const b = json(await c.coverage(fd, 'application/json', '?new=true&reset=true'));
  t.same({ new: b.new, seen: b.seen }, { new: 0, seen: 3 }, 'reported PCs are not new again');
  t.equal(json(await c.descriptor(fd)).count, 0, 'and the count was reset');
  await c.binary(1, pcs(0x20, 0x30));
  const bin = (await c.coverage(fd, 'application/octet-stream', '?new=true&reset=true')).rawPayload;
  t.equal(bin.length, 16, 'binary: the count word and the one new record, not the 64-word area');
  t.equal(bin.readBigUInt64LE(0), 1n);
  t.equal(bin.readBigUInt64LE(8), 0x30n);
  await c.binary(1, pcs(0x10));
  t.equal((await c.coverage(fd, 'application/octet-stream', '?new=true&reset=true')).rawPayload.length, 8, 'nothing new: 8 bytes');
  await c.binary(1, pcs(0x40, 0x10));
  t.equal((await c.coverage(fd, 'text/plain', '?new=true')).body, '0x40\n');
  t.same(app.engine.checkInvariants(), []);
});

t.test('reading /cover does not take newness away from the area that recorded the PC', async (t) => {
  const { c, fd } = await traced(t);
  await c.binary(1, pcs(0x10, 0x20));
  t.equal(json(await union(c)).count, 2, 'a dashboard reads the union: the PCs are folded');
  const j = json(await c.coverage(fd, 'application/json', '?new=true'));
  t.same(j.pcs, ['0x10', '0x20'], 'still new for the area that found them');
});

t.test('two descriptors recording the same PC: it is new for exactly one of them', async (t) => {
  const { app, c, fd } = await traced(t);
  const fd2 = await c.open(2);
  await c.ok(fd2, 'KCOV_INIT_TRACE', 2, 64);
  await c.ok(fd2, 'KCOV_ENABLE', 2, 'pc');
  await c.binary(1, pcs(0x10, 0x20));
  await c.binary(2, pcs(0x20, 0x30));
  const b = json(await c.coverage(fd2, 'application/json', '?new=true'));
  const a = json(await c.coverage(fd, 'application/json', '?new=true'));
  t.same([...a.pcs, ...b.pcs].sort(), ['0x10', '0x20', '0x30'], 'every PC reported new once, 0x20 by one of them');
  t.same(app.engine.checkInvariants(), []);
});

t.test('DELETE /cover empties the union; what the areas hold then does not count', async (t) => {
  const { c, fd } = await traced(t);
  await c.binary(1, pcs(0x10));
  t.equal((await c.app.inject({ method: 'DELETE', url: `${c.base}/cover` })).statusCode, 204);
  t.same(json(await union(c)).pcs, []);
  await c.binary(1, pcs(0x20));
  t.same(json(await union(c)).pcs, ['0x20']);
  t.same(json(await c.coverage(fd, 'application/json', '?new=true')).pcs, ['0x20'], '0x10 was recorded before the reset; 0x20 is new');
});

t.test('kernel views show the corpus; POST /v1/kernels takes one', async (t) => {
  const app = await makeApp(t);
  const r = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'k9', dialect: 'openbsd', corpus: 'shared' } });
  t.equal(r.statusCode, 201);
  t.equal(json(r).corpus, 'shared');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/default' })).corpus, 'default');
  t.equal((await app.inject({ method: 'POST', url: '/v1/kernels', payload: { dialect: 'linux', corpus: '{x}' } })).statusCode, 400);
});

t.test('random programs on all four dialects: /cover is exactly the union of accepted PCs', async (t) => {
  // Each step is an ioctl, events, a count write, a read with reset, a close; the model keeps what was accepted.
  const dialects: [string, string, string, string][] = [
    ['linux', 'KCOV_INIT_TRACE', 'KCOV_ENABLE', 'KCOV_DISABLE'],
    ['openbsd', 'KIOSETBUFSIZE', 'KIOENABLE', 'KIODISABLE'],
    ['netbsd', 'KCOV_IOC_SETBUFSIZE', 'KCOV_IOC_ENABLE', 'KCOV_IOC_DISABLE'],
    ['freebsd', 'KIOSETBUFSIZE', 'KIOENABLE', 'KIODISABLE'],
  ];
  let seed = 12345;
  const rnd = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  for (const [dialect, init, enable, disable] of dialects) {
    const app = await makeApp(t);
    const c = new Client(app, dialect);
    t.equal((await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: dialect, dialect } })).statusCode, 201);
    const expected = new Set<number>();
    for (let round = 0; round < 6; round++) {
      const tid = 1 + round;
      const fd = await c.open(tid);
      await c.ok(fd, init, tid, 16);
      await c.ok(fd, enable, tid, 'pc');
      for (let step = 0; step < 12; step++) {
        const op = rnd(5);
        if (op <= 1) {
          const batch = Array.from({ length: 1 + rnd(8) }, () => 0x1000 + rnd(64) * 8);
          const r = json(await c.binary(tid, pcs(...batch)));
          batch.slice(0, r.accepted).forEach((p) => expected.add(p));
        } else if (op === 2) {
          await app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: rnd(3) } });
        } else if (op === 3) {
          await c.coverage(fd, 'application/json', rnd(2) === 0 ? '?reset=true' : '?new=true&reset=true');
        } else {
          await union(c);
        }
        t.same(app.engine.checkInvariants(), [], `${dialect} round ${round} step ${step}`);
      }
      await c.ok(fd, disable, tid, 0);
      if (rnd(2) === 0) await c.close(fd);
    }
    const got = json(await union(c)).pcs.map((h: string) => Number(h));
    t.same(got, [...expected].sort((a, b) => a - b), `${dialect}: the union is exactly what was accepted`);
  }
});

t.test('the union is charged to the memory budget; past it, PCs are counted as lost', async (t) => {
  // KCOV_COVER_LIMIT as large as the budget: the budget itself is what runs out here.
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 64 * 1024, coverLimit: 64 * 1024 });
  const k = e.kernel('default');
  const d = k.open(1);
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 4096); // 32 KiB of area
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 'pc');
  const before = e.budget.used;
  const body = Buffer.alloc(4095 * 8);
  for (let i = 0; i < 4095; i++) body.writeUInt32LE(0x1000 + i * 4, i * 8);
  k.eventsBinary(1, 'pc', [body], body.length);
  k.setCount(d, 0);
  t.ok(e.budget.used > before, 'folding charged the union');
  t.ok(e.budget.used <= e.budget.limit);
  t.ok(k.cover.lost > 0, 'the budget could not hold every PC and signal: counted, not hidden');
  t.same(e.checkInvariants(), []);
  e.deleteKernel('default');
  t.equal(e.budget.used, 0, 'deleting the kernel releases the union');
});

t.test('a count lowered outside the kernel gate is reported by checkInvariants', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 24 });
  const k = e.kernel('default');
  const d = k.open(1);
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 64);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 'pc');
  k.eventsBinary(1, 'pc', [pcs(0x10, 0x20)], 16);
  k.cover.settle();
  t.same(e.checkInvariants(), []);
  d.trace()!.count = 0; // what a writer that bypassed Kernel.gated would do
  t.match(e.checkInvariants().join('\n'), /went below its folded mark/);
});

t.test('the PC table grows by doubling and stays consistent', async (t) => {
  const { PcSet } = await import('../../src/engine/cover/pcset.js');
  const { MemoryBudget } = await import('../../src/engine/memory.js');
  const budget = new MemoryBudget(1 << 24);
  const s = new PcSet(budget, 'test');
  t.equal(budget.used, 0, 'an empty set holds no table');
  let added = 0;
  for (let i = 0; i < 5000; i++) if (s.add(i * 8, i & 3, 1) >= 0) added++;
  t.equal(added, 5000);
  t.equal(s.size, 5000);
  t.equal(s.slots, 8192, '1024 doubled three times: never more than 3/4 full');
  t.equal(budget.used, 8192 * 12 + s.winSpan / 8, 'the table and its presence window are charged');
  t.equal(s.add(8, 1, 1), -1, 'present');
  const out: string[] = [];
  s.check('set', out);
  t.same(out, []);
  const sorted = s.sorted();
  t.equal(sorted[0], 0);
  t.equal(sorted[2], 4 * 8, 'ascending as 64-bit values: high halves first');
  s.clear();
  t.equal(budget.used, 0);
});

t.test('KCOV_COVER=off: no union is kept; /cover and ?new=true are EOPNOTSUPP', async (t) => {
  const app = await makeApp(t, { KCOV_COVER: 'off' });
  const c = new Client(app);
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_ENABLE', 1, 'pc');
  t.equal(json(await c.binary(1, pcs(0x10))).accepted, 1);
  await c.coverage(fd, 'application/json', '?reset=true');
  t.equal(app.engine.kernel('default').cover.pcs.size, 0, 'nothing folded');
  t.equal((await union(c)).statusCode, 501);
  t.equal((await c.coverage(fd, 'application/json', '?new=true')).statusCode, 501);
  t.same(app.engine.checkInvariants(), []);
});

t.test('KCOV_COVER and KCOV_FLEET_CLUSTER are booleans: every documented spelling works, others are refused', async (t) => {
  for (const v of ['off', 'OFF', '0', 'false', 'no']) t.equal(loadConfig({ KCOV_COVER: v }).cover, false, `KCOV_COVER=${v}`);
  for (const v of ['on', '1', 'true', 'yes']) t.equal(loadConfig({ KCOV_COVER: v }).cover, true, `KCOV_COVER=${v}`);
  t.equal(loadConfig({}).cover, true, 'on by default');
  t.throws(() => loadConfig({ KCOV_COVER: 'maybe' }), /KCOV_COVER: "maybe" is not a boolean/);
  t.equal(loadConfig({}).fleetCluster, false, 'KCOV_FLEET_CLUSTER off by default');
  for (const v of ['true', '1', 'yes', 'on']) t.equal(loadConfig({ KCOV_FLEET_CLUSTER: v }).fleetCluster, true, `KCOV_FLEET_CLUSTER=${v}`);
  for (const v of ['false', '0', '']) t.equal(loadConfig({ KCOV_FLEET_CLUSTER: v }).fleetCluster, false, `KCOV_FLEET_CLUSTER=${JSON.stringify(v)}`);
  t.throws(() => loadConfig({ KCOV_FLEET_CLUSTER: 'cluster' }), /KCOV_FLEET_CLUSTER/);
  t.throws(() => loadConfig({ KCOV_FLEET_URL: 'redis://127.0.0.1:1', KCOV_COVER: 'off' }), /needs the cover union/);
});

/** One sample of `name{kernel="…"}` from /metrics. */
async function metric(app: Awaited<ReturnType<typeof makeApp>>, name: string, kernel = 'default'): Promise<number> {
  const body = (await app.inject({ method: 'GET', url: '/metrics' })).body;
  const m = new RegExp(`^${name}\\{kernel="${kernel}"\\} (\\S+)$`, 'm').exec(body);
  if (m === null) throw new Error(`${name} not on /metrics`);
  return Number(m[1]);
}

t.test('/metrics: union size, signal, new PCs (total and per minute) per kernel', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_ENABLE', 1, 'pc');
  t.equal(await metric(app, 'kcovd_cover_new_pcs_per_minute'), 0, 'the first scrape has no window yet');
  await c.binary(1, pcs(0x10, 0x20, 0x10));
  t.equal(json(await c.coverage(fd, 'application/json', '?new=true&reset=true')).new, 2);
  t.equal(await metric(app, 'kcovd_cover_pcs'), 2);
  t.equal(await metric(app, 'kcovd_cover_signal'), 3, 'edges 0->0x10, 0x10->0x20, 0x20->0x10');
  t.equal(await metric(app, 'kcovd_cover_new_pcs_total'), 2);
  t.equal(await metric(app, 'kcovd_cover_new_pcs_per_minute'), 2, 'both within the last minute');
  await c.binary(1, pcs(0x30));
  await c.coverage(fd, 'application/json', '?new=true&reset=true');
  t.equal(await metric(app, 'kcovd_cover_new_pcs_per_minute'), 3);
  t.equal(await metric(app, 'kcovd_cover_new_pcs_total'), 3);
});
