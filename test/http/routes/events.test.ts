/** POST .../threads/{tid}/events: binary and JSON batches, and what is refused. */
import t from 'tap';
import { Readable } from 'node:stream';
import { Client, cmps, expectProblem, json, makeApp, pcs } from '#test/helpers.js';

async function enabled(t: Parameters<typeof makeApp>[0], words: number, mode: 0 | 1, env: Record<string, string> = {}) {
  const c = new Client(await makeApp(t, env));
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, words);
  await c.ok(fd, 'KCOV_ENABLE', 1, mode);
  return { c, fd };
}

async function rawArea(c: Client, fd: number): Promise<Buffer> {
  return (await c.coverage(fd, 'application/octet-stream')).rawPayload;
}

t.test('binary PCs land byte-for-byte after the count word', async (t) => {
  const { c, fd } = await enabled(t, 8, 0);
  const body = Buffer.from('1000008101000000ffeeddccbbaa99880000000000000000', 'hex');
  t.same(json(await c.binary(1, body)), { accepted: 3, dropped: 0, ignored: 0, count: 3 });
  const area = await rawArea(c, fd);
  t.equal(area.length, 64);
  t.equal(area.readBigUInt64LE(0), 3n);
  t.same(area.subarray(8, 32), body, 'records exactly as sent');
});

t.test('binary CMP records of four words, with drops past floor((size-1)/4)', async (t) => {
  const { c, fd } = await enabled(t, 10, 1); // capacity 2
  const body = cmps([7, 1, 2, 0x1000], [6, 3, 4, 0x2000], [5, 5, 6, 0x3000]);
  t.same(json(await c.binary(1, body, 'cmp')), { accepted: 2, dropped: 1, ignored: 0, count: 2 });
  const cov = await c.cover(fd);
  t.same(cov.cmps, [
    { type: 7, size: 8, const: true, arg1: '0x1', arg2: '0x2', pc: '0x1000' },
    { type: 6, size: 8, const: false, arg1: '0x3', arg2: '0x4', pc: '0x2000' },
  ]);
  t.same(json(await c.binary(1, pcs(1, 2))), { accepted: 0, dropped: 0, ignored: 2, count: null }, 'PCs in CMP mode are not traced');
});

t.test('a body that is not whole records is refused and stores nothing', async (t) => {
  const { c, fd } = await enabled(t, 16, 0);
  await c.binary(1, pcs(1, 2));
  const before = await rawArea(c, fd);
  for (const len of [1, 7, 9, 15, 17]) {
    expectProblem(t, await c.binary(1, Buffer.alloc(len, 0xab)), 400, 'EINVAL');
  }
  const { c: c2, fd: fd2 } = await enabled(t, 16, 1);
  expectProblem(t, await c2.binary(1, Buffer.alloc(40, 0xab), 'cmp'), 400, 'EINVAL');
  t.equal((await c2.cover(fd2)).count, 0);
  t.same(await rawArea(c, fd), before, 'area bytes untouched');
});

t.test('a streamed body split mid-record is stitched across chunks', async (t) => {
  const { c, fd } = await enabled(t, 8, 0);
  const body = pcs(0x11, 0x22, 0x33, 0x44);
  const parts = [body.subarray(0, 3), body.subarray(3, 12), body.subarray(12, 25), body.subarray(25)];
  const res = await c.app.inject({
    method: 'POST',
    url: '/v1/kernels/default/threads/1/events',
    headers: { 'content-type': 'application/octet-stream' },
    payload: Readable.from(parts),
  });
  t.same(json(res), { accepted: 4, dropped: 0, ignored: 0, count: 4 });
  t.same((await c.cover(fd)).pcs, ['0x11', '0x22', '0x33', '0x44']);
});

t.test('JSON: pcs, sites, cmps and switches, applied in the order of the keys', async (t) => {
  const { c, fd } = await enabled(t, 16, 0);
  const res = await c.events(1, {
    sites: ['net/ipv4/tcp.c:123'],
    pcs: ['0xffffffff81000010', '0x000000000000002a', '42', 7],
  });
  t.same(json(res), { accepted: 5, dropped: 0, ignored: 0, count: 5 });
  t.same((await c.cover(fd)).pcs, ['0x864378d0dcd5504f', '0xffffffff81000010', '0x2a', '0x2a', '0x7']);

  const { c: cc, fd: cfd } = await enabled(t, 64, 1);
  const r2 = await cc.events(1, {
    cmps: [
      { size: 1, arg1: 1, arg2: 2, pc: '0x100' },
      { size: 8, const: true, arg1: '0xffffffffffffffff', arg2: 0, pc: '0x104' },
      { type: 5, arg1: 9, arg2: 9, pc: '0x108' },
    ],
    switches: [{ val: 3, size: 32, cases: [1, 2, 3], pc: '0x200' }],
    pcs: [1],
  });
  t.same(json(r2), { accepted: 6, dropped: 0, ignored: 1, count: 6 }, 'three cmps, three switch cases; the PC is ignored');
  t.same((await cc.cover(cfd)).cmps, [
    { type: 0, size: 1, const: false, arg1: '0x1', arg2: '0x2', pc: '0x100' },
    { type: 7, size: 8, const: true, arg1: '0xffffffffffffffff', arg2: '0x0', pc: '0x104' },
    { type: 5, size: 4, const: true, arg1: '0x9', arg2: '0x9', pc: '0x108' },
    // __sanitizer_cov_trace_switch: KCOV_CMP_CONST | KCOV_CMP_SIZE(2), arg1 = case, arg2 = val
    { type: 5, size: 4, const: true, arg1: '0x1', arg2: '0x3', pc: '0x200' },
    { type: 5, size: 4, const: true, arg1: '0x2', arg2: '0x3', pc: '0x200' },
    { type: 5, size: 4, const: true, arg1: '0x3', arg2: '0x3', pc: '0x200' },
  ]);
});

t.test('malformed JSON batches are 400 EINVAL and change nothing', async (t) => {
  const { c, fd } = await enabled(t, 16, 0);
  await c.events(1, { pcs: [1] });
  const bad: unknown[] = [
    { pcs: ['0x1', '0x10000000000000000'] },        // past u64
    { pcs: ['0x1', 'zz'] },                          // not hex
    { pcs: [1, -1] },                                // negative
    { pcs: [1, 1.5] },                               // not an integer
    { pcs: [1, 2 ** 53] },                           // not a safe integer
    { pcs: [1], nope: [] },                          // unknown field
    { pcs: '0x1' },                                  // wrong type
    { cmps: [{ size: 3, arg1: 1, arg2: 1, pc: 1 }] },
    { switches: [{ val: 1, size: 12, cases: [1], pc: 1 }] },
    { sites: [5] },
    [1, 2, 3],
  ];
  for (const payload of bad) expectProblem(t, await c.events(1, payload as Record<string, unknown>), 400, 'EINVAL');
  const text = await c.app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/1/events', headers: { 'content-type': 'application/json' }, payload: '{"pcs":[1,',
  });
  expectProblem(t, text, 400, 'EINVAL');
  const form = await c.app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/1/events', headers: { 'content-type': 'text/csv' }, payload: '1,2',
  });
  expectProblem(t, form, 415, 'EINVAL');
  t.same((await c.cover(fd)).pcs, ['0x1'], 'only the first good batch is there');
});

t.test('a thread with no enabled descriptor ignores everything; unknown kernels are ENOENT', async (t) => {
  const c = new Client(await makeApp(t));
  t.same(json(await c.events(5, { pcs: [1, 2] })), { accepted: 0, dropped: 0, ignored: 2, count: null });
  t.same(json(await c.binary(5, pcs(1))), { accepted: 0, dropped: 0, ignored: 1, count: null });
  expectProblem(t, await new Client(c.app, 'ghost').events(5, { pcs: [1] }), 404, 'ENOENT');
  expectProblem(t, await c.app.inject({ method: 'POST', url: '/v1/kernels/default/threads/0/events', payload: { pcs: [] } }), 400, 'EINVAL');
});

t.test('the body limit is a 413 problem', async (t) => {
  const { c } = await enabled(t, 16, 0, { KCOV_BODY_LIMIT: '1024' });
  expectProblem(t, await c.binary(1, Buffer.alloc(2048)), 413, 'E2BIG');
  expectProblem(t, await c.events(1, { pcs: Array.from({ length: 300 }, (_, i) => i) }), 413, 'E2BIG');
});
