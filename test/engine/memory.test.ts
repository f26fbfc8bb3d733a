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
