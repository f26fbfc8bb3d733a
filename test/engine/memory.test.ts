/**
 * KCOV_MEMORY_LIMIT is one budget for every area of every kernel: descriptor
 * areas, per-CPU areas, across kernels. Past it, the allocating request fails
 * with ENOMEM (507) and nothing is allocated; freeing gives the bytes back.
 */
import t from 'tap';
import { Engine } from '../../src/engine/engine.js';
import { KcovError } from '../../src/engine/errno.js';
import { COST } from '../../src/engine/kernel/costs.js';
import { Client, expectProblem, json, makeApp } from '../helpers.js';

const WORDS = 1024; // 8 KiB an area

/** Three descriptors, each opened by its own new thread. */
const OBJECTS = 3 * (COST.descriptor + COST.thread);

t.test('engine: every area of every kernel is charged to one budget', async (t) => {
  const engine = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 3 * WORDS * 8 + OBJECTS, cpuAreaWords: WORDS });
  const areas = () => engine.budget.breakdown().areas + engine.budget.breakdown().sections;
  const a = engine.kernel('default');
  const b = engine.createKernel({ name: 'b', dialect: 'linux' });
  const fa = a.open(1).fd;
  a.ioctl(fa, 'KCOV_INIT_TRACE', 1, WORDS);
  const fb = b.open(1).fd;
  b.ioctl(fb, 'KCOV_INIT_TRACE', 1, WORDS);
  // A per-CPU area goes through the same budget as descriptor areas.
  b.cpuArea(b.cpu(0), WORDS);
  t.equal(areas(), 3 * WORDS * 8, 'three areas charged');
  t.equal(a.memory, WORDS * 8, 'kernel a holds one area');
  t.equal(b.memory, 2 * WORDS * 8, 'kernel b holds two');

  // Linux kcov_ioctl KCOV_INIT_TRACE: vmalloc_user failing is ENOMEM.
  const fc = a.open(2).fd;
  let err: unknown;
  try {
    a.ioctl(fc, 'KCOV_INIT_TRACE', 2, WORDS);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof KcovError && err.errno === 'ENOMEM', 'fourth area is ENOMEM');
  t.equal(areas(), 3 * WORDS * 8, 'a failed allocation charges nothing');
  t.equal(engine.budget.used, 3 * WORDS * 8 + OBJECTS, 'the objects are charged too');
  t.equal(a.descriptor(fc).area, null, 'and leaves no area');

  a.close(fa); // the last reference: kcov_put frees the area
  t.equal(areas(), 2 * WORDS * 8, 'close gives the bytes back');
  a.ioctl(fc, 'KCOV_INIT_TRACE', 2, WORDS);
  t.equal(areas(), 3 * WORDS * 8, 'and they can be allocated again');

  engine.deleteKernel('b');
  t.equal(engine.budget.used, WORDS * 8 + 2 * (COST.descriptor + COST.thread) - COST.descriptor, 'deleting a kernel releases everything it held');
});

t.test('HTTP: ENOMEM past KCOV_MEMORY_LIMIT across kernels, and GET /v1/kernels reports the budget', async (t) => {
  const app = await makeApp(t, { KCOV_MEMORY_LIMIT: String(2 * WORDS * 8 + OBJECTS) });
  const created = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'other', dialect: 'linux' } });
  t.equal(created.statusCode, 201);
  const d = new Client(app);
  const o = new Client(app, 'other');
  const fd1 = await d.open(1);
  await d.ok(fd1, 'KCOV_INIT_TRACE', 1, WORDS);
  const fd2 = await o.open(1);
  await o.ok(fd2, 'KCOV_INIT_TRACE', 1, WORDS);
  const fd3 = await d.open(2);
  expectProblem(t, await d.ioctl(fd3, 'KCOV_INIT_TRACE', 2, 2), 507, 'ENOMEM');

  const list = json(await app.inject({ method: 'GET', url: '/v1/kernels' }));
  t.match(list.memory, { used: 2 * WORDS * 8 + OBJECTS, limit: 2 * WORDS * 8 + OBJECTS }, 'budget used and limit');
  t.match(list.memory.by, { areas: 2 * WORDS * 8, descriptors: 3 * COST.descriptor, threads: 3 * COST.thread, guards: 0, waiters: 0 }, 'the breakdown');
  const byName = Object.fromEntries(list.kernels.map((k: { name: string; memory: number }) => [k.name, k.memory]));
  t.same(byName, { default: WORDS * 8, other: WORDS * 8 }, 'memory per kernel');

  t.equal((await app.inject({ method: 'DELETE', url: '/v1/kernels/other' })).statusCode, 204);
  await d.ok(fd3, 'KCOV_INIT_TRACE', 2, WORDS);
  t.same(json(await app.inject({ method: 'GET', url: '/v1/kernels' })).memory.by.areas, 2 * WORDS * 8, 'freed by the delete, taken again');
});

const MIB_WORDS = 128 * 1024; // 1 MiB an area: the smallest the pool keeps

t.test('engine: a freed area of 1 MiB or more is pooled, charged as pool, and reused zeroed by an area of its size', async (t) => {
  const engine = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 64 * 1024 ** 2, areaPool: 4 * 1024 ** 2 });
  const k = engine.kernel('default');
  const by = () => engine.budget.breakdown();
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, MIB_WORDS);
  const first = k.descriptor(fd).area!;
  first.u32.fill(0xabcd);
  k.close(fd);
  t.equal(by().areas, 0, 'the area is no longer charged as an area');
  t.equal(by().pool, MIB_WORDS * 8, 'its buffer is charged as pool while idle');
  t.same(engine.checkInvariants(), []);

  const fd2 = k.open(1).fd;
  k.ioctl(fd2, 'KCOV_INIT_TRACE', 1, MIB_WORDS);
  const again = k.descriptor(fd2).area!;
  t.equal(again.buffer, first.buffer, 'the same buffer is reused');
  t.ok(again.u32.every((w) => w === 0), 'and reads as a fresh area: all zero');
  t.equal(by().pool, 0);
  t.equal(by().areas, MIB_WORDS * 8);
  t.equal(engine.budget.reused, 1);

  // Another size does not take it; a small area is never pooled.
  k.close(fd2);
  const fd3 = k.open(1).fd;
  k.ioctl(fd3, 'KCOV_INIT_TRACE', 1, 2 * MIB_WORDS);
  t.not(k.descriptor(fd3).area!.buffer, first.buffer);
  t.equal(by().pool, MIB_WORDS * 8, 'the 1 MiB buffer stays idle');
  const fd4 = k.open(1).fd;
  k.ioctl(fd4, 'KCOV_INIT_TRACE', 1, WORDS);
  k.close(fd4);
  t.equal(by().pool, MIB_WORDS * 8, 'an 8 KiB area is not pooled');
  t.same(engine.checkInvariants(), []);
});

t.test('engine: the pool never makes a charge fail: idle buffers are given back, oldest first, to make room', async (t) => {
  const limit = 8 * 1024 ** 2;
  const engine = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: limit, areaPool: limit });
  const k = engine.kernel('default');
  const open = (words: number) => {
    const fd = k.open(1).fd;
    k.ioctl(fd, 'KCOV_INIT_TRACE', 1, words);
    return fd;
  };
  const fds = [open(MIB_WORDS), open(MIB_WORDS), open(2 * MIB_WORDS)];
  for (const fd of fds) k.close(fd);
  t.equal(engine.budget.breakdown().pool, 4 * 1024 ** 2, 'all three idle');
  // 6 MiB of a new size needs 2 of the idle 4 MiB back: the two oldest (1 MiB each) go.
  open(6 * MIB_WORDS - 1024);
  t.equal(engine.budget.breakdown().pool, 2 * 1024 ** 2, 'the 2 MiB buffer, the newest, is still idle');
  t.equal(engine.budget.evicted, 2);
  t.ok(engine.budget.used <= limit);
  // What does not fit even with the pool emptied fails and changes nothing.
  const fd = k.open(1).fd;
  const before = engine.budget.breakdown();
  let err: unknown;
  try {
    k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 8 * MIB_WORDS);
  } catch (e) {
    err = e;
  }
  t.ok(err instanceof KcovError && err.errno === 'ENOMEM', 'ENOMEM');
  t.same(engine.budget.breakdown(), before, 'a refused charge gives nothing back from the pool');
  t.same(engine.checkInvariants(), []);
});

t.test('engine: KCOV_AREA_POOL=0 keeps nothing', async (t) => {
  const engine = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 64 * 1024 ** 2, areaPool: 0 });
  const k = engine.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, MIB_WORDS);
  k.close(fd);
  t.equal(engine.budget.breakdown().pool, 0);
  t.equal(engine.budget.breakdown().areas, 0);
  t.equal(engine.budget.reused + engine.budget.evicted, 0);
});

t.test('engine: KCOV_COVER_LIMIT caps the cover unions; past it PCs are lost (counted) and areas still get their room', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 64 * 1024 ** 2, coverLimit: 256 * 1024 });
  const k = e.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 200_000);
  k.ioctl(fd, 'KCOV_ENABLE', 1, 0);
  const n = 100_000;
  const body = new Uint8Array(n * 8);
  const dv = new DataView(body.buffer);
  for (let i = 0; i < n; i++) dv.setUint32(i * 8, 0x81000000 + i * 4, true);
  k.eventsBinary(1, 'pc', [body], body.length);
  k.cover.settle();
  t.ok(e.budget.breakdown().cover <= 256 * 1024, `cover ${e.budget.breakdown().cover} within the cap`);
  t.ok(k.cover.lost > 0, 'what did not fit is counted');
  t.ok(k.cover.pcs.size < n, 'the union stopped growing');
  t.ok(k.cover.lost >= n - k.cover.pcs.size, 'every PC it could not hold is counted');
  // The rest of the budget is still there for areas.
  const fd2 = k.open(1).fd;
  t.doesNotThrow(() => k.ioctl(fd2, 'KCOV_INIT_TRACE', 1, 4 * 1024 * 1024));
  t.same(e.checkInvariants(), []);
});
