/** GET .../coverage in its three encodings, ranges, reset, and PUT .../coverage/count. */
import t from 'tap';
import { Client, expectProblem, json, makeApp, pcs } from '#test/helpers.js';

async function filled(t: Parameters<typeof makeApp>[0]) {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 8);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);
  await c.binary(1, pcs(0xa0, 0xb0, 0xc0));
  return { c, fd };
}

t.test('before KCOV_INIT_TRACE reading the area fails as Linux mmap does (EINVAL)', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  expectProblem(t, await c.coverage(fd), 400, 'EINVAL');
  expectProblem(t, await c.coverage(fd, 'application/octet-stream'), 400, 'EINVAL');
  const put = await c.app.inject({ method: 'PUT', url: `/v1/kernels/default/descriptors/${fd}/coverage/count`, payload: { count: 0 } });
  expectProblem(t, put, 400, 'EINVAL');
  expectProblem(t, await c.coverage(99), 404, 'EBADF');
});

t.test('binary is the whole area, words x 8 bytes, as mmap shows it', async (t) => {
  const { c, fd } = await filled(t);
  const res = await c.coverage(fd, 'application/octet-stream');
  t.equal(res.statusCode, 200);
  t.equal(res.headers['content-type'], 'application/octet-stream');
  t.equal(res.headers['accept-ranges'], 'bytes');
  const want = Buffer.alloc(64);
  want.writeBigUInt64LE(3n, 0);
  want.writeBigUInt64LE(0xa0n, 8);
  want.writeBigUInt64LE(0xb0n, 16);
  want.writeBigUInt64LE(0xc0n, 24);
  t.same(res.rawPayload, want);
  const viaQuery = await c.coverage(fd, 'application/json', '?format=binary');
  t.same(viaQuery.rawPayload, want, '?format=binary overrides Accept');
});

t.test('Range reads part of the area with 206; out of range is 416', async (t) => {
  const { c, fd } = await filled(t);
  const url = `/v1/kernels/default/descriptors/${fd}/coverage`;
  const get = (range: string) => c.app.inject({ url, headers: { accept: 'application/octet-stream', range } });
  const first = await get('bytes=0-7');
  t.equal(first.statusCode, 206);
  t.equal(first.headers['content-range'], 'bytes 0-7/64');
  t.equal(first.rawPayload.readBigUInt64LE(0), 3n, 'the count word');
  const tail = await get('bytes=-8');
  t.equal(tail.headers['content-range'], 'bytes 56-63/64');
  const open = await get('bytes=16-');
  t.equal(open.rawPayload.length, 48);
  t.equal(open.rawPayload.readBigUInt64LE(0), 0xb0n);
  const clipped = await get('bytes=60-1000');
  t.equal(clipped.headers['content-range'], 'bytes 60-63/64');
  const bad = await get('bytes=64-70');
  expectProblem(t, bad, 416, 'EINVAL');
  t.equal(bad.headers['content-range'], 'bytes */64');
  t.equal((await get('bytes=0-1,4-5')).statusCode, 200, 'multiple ranges: the whole area');
});

t.test('JSON and text encodings; Accept negotiation with q-values', async (t) => {
  const { c, fd } = await filled(t);
  t.same(await c.cover(fd), { mode: 'pc', count: 3, words: 8, pcs: ['0xa0', '0xb0', '0xc0'] });
  const text = await c.coverage(fd, 'text/plain');
  t.match(text.headers['content-type'], /^text\/plain/);
  t.equal(text.body, '0xa0\n0xb0\n0xc0\n', 'rawcover: one 0x PC a line');
  const q = await c.coverage(fd, 'application/json;q=0.5, text/plain;q=0.9');
  t.equal(q.body, '0xa0\n0xb0\n0xc0\n', 'higher q wins');
  const none = await c.app.inject({ url: `/v1/kernels/default/descriptors/${fd}/coverage` });
  t.equal(json(none).count, 3, 'no Accept: JSON');
  const asCmp = json(await c.coverage(fd, 'application/json', '?mode=cmp'));
  // Read as CMP, 8 words hold floor(7/4) = 1 record: min(count 3, capacity 1).
  t.same(asCmp.cmps, [{ type: 0xa0, size: 1, const: false, arg1: '0xb0', arg2: '0xc0', pc: '0x0' }], '?mode=cmp reinterprets the words');
});

t.test('count past capacity is shown as stored; records shown are min(count, capacity)', async (t) => {
  const { c, fd } = await filled(t);
  const url = `/v1/kernels/default/descriptors/${fd}/coverage/count`;
  const put = await c.app.inject({ method: 'PUT', url, payload: { count: 1000 } });
  t.same(json(put), { count: 1000, words: 8 });
  const cov = await c.cover(fd);
  t.equal(cov.count, 1000);
  t.equal(cov.pcs.length, 7, 'capacity of 8 words');
  t.same(json(await c.binary(1, pcs(1))), { accepted: 0, dropped: 1, ignored: 0, count: 1000 }, 'a count past capacity drops');
  const zero = await c.app.inject({ method: 'PUT', url, payload: { count: 0 } });
  t.equal(json(zero).count, 0);
  t.same(json(await c.binary(1, pcs(0xd0))), { accepted: 1, dropped: 0, ignored: 0, count: 1 }, 'cover[0] = 0 restarts the trace');
  expectProblem(t, await c.app.inject({ method: 'PUT', url, payload: { count: -1 } }), 400, 'EINVAL');
  expectProblem(t, await c.app.inject({ method: 'PUT', url, payload: { count: '5' } }), 400, 'EINVAL');
  expectProblem(t, await c.app.inject({ method: 'PUT', url, payload: {} }), 400, 'EINVAL');
});

t.test('?reset=true returns the records and zeroes the count in one step', async (t) => {
  const { c, fd } = await filled(t);
  const text = await c.coverage(fd, 'text/plain', '?reset=true');
  t.equal(text.body, '0xa0\n0xb0\n0xc0\n');
  const bin = await c.coverage(fd, 'application/octet-stream', '?reset=1');
  t.equal(bin.rawPayload.readBigUInt64LE(0), 0n);
  t.equal(bin.rawPayload.readBigUInt64LE(8), 0xa0n, 'records stay in place, as after cover[0] = 0');
  expectProblem(t, await c.coverage(fd, 'application/json', '?reset=yes'), 400, 'EINVAL');
});

t.test('CMP text lines are `type arg1 arg2 pc`', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 9);
  await c.ok(fd, 'KCOV_ENABLE', 1, 'cmp');
  await c.events(1, { cmps: [{ size: 2, const: true, arg1: '0x10', arg2: '0x20', pc: '0xffffffff81000000' }] });
  t.equal((await c.coverage(fd, 'text/plain')).body, '0x3 0x10 0x20 0xffffffff81000000\n');
});
