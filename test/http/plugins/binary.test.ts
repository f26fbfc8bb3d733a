/**
 * Binary ingestion on the hot path: records that straddle chunks, areas that
 * fill mid-body (Linux __sanitizer_cov_trace_pc / write_comp_data: a record
 * past the end is dropped and the count stays), malformed tails, and
 * Content-Length mismatches — over a real socket with a streamed body, and
 * over inject with a stream payload. Also the fast checks in front of zod.
 */
import { Readable } from 'node:stream';
import t from 'tap';
import { request } from 'undici';
import { Client, cmps, expectProblem, json, makeApp, pcs } from '#test/helpers.js';

async function traced(c: Client, tid: number, words: number, mode: 'pc' | 'cmp' = 'pc'): Promise<number> {
  const fd = await c.open(tid);
  await c.ok(fd, 'KCOV_INIT_TRACE', tid, words);
  await c.ok(fd, 'KCOV_ENABLE', tid, mode);
  return fd;
}

/** Cut a buffer at the given offsets (none of them on a record boundary in the tests). */
function cut(b: Buffer, ...at: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const x of [...at, b.length]) {
    out.push(b.subarray(from, x));
    from = x;
  }
  return out;
}

async function area(c: Client, fd: number): Promise<Buffer> {
  const res = await c.coverage(fd, 'application/octet-stream');
  return res.rawPayload;
}

t.test('real socket: a streamed body whose chunks break mid-record', async (t) => {
  const app = await makeApp(t);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const c = new Client(app);
  const fd = await traced(c, 7, 1 + 100);
  const body = pcs(...Array.from({ length: 40 }, (_, i) => 0x1000 + i));
  const port = (app.server.address() as { port: number }).port;
  // Chunked transfer (no Content-Length): 3, 13 and 100 bytes into records.
  async function* gen() {
    for (const part of cut(body, 3, 13, 100, 317)) {
      yield part;
      await new Promise((r) => setImmediate(r));
    }
  }
  const res = await request(`http://127.0.0.1:${port}/v1/kernels/default/threads/7/events?kind=pc`, {
    method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: Readable.from(gen()),
  });
  t.equal(res.statusCode, 200);
  t.same(await res.body.json(), { accepted: 40, dropped: 0, ignored: 0, count: 40 });
  const bytes = await area(c, fd);
  t.same(bytes.subarray(8, 8 + body.length), body, 'records land whole, in order');

  // Same again with a Content-Length and the same odd cuts.
  const res2 = await request(`http://127.0.0.1:${port}/v1/kernels/default/threads/7/events?kind=pc`, {
    method: 'POST', headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }, body: Readable.from(cut(body, 5, 170)),
  });
  t.same(await res2.body.json(), { accepted: 40, dropped: 0, ignored: 0, count: 80 });
  t.same((await area(c, fd)).subarray(8 + body.length, 8 + 2 * body.length), body);
});

t.test('inject with a stream payload: CMP records split across chunks', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 3, 1 + 4 * 3, 'cmp');
  const body = cmps([1, 2, 3, 0x100], [5, 6, 7, 0x200]);
  const res = await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/3/events?kind=cmp',
    headers: { 'content-type': 'application/octet-stream' }, payload: Readable.from(cut(body, 1, 31, 33, 50)),
  });
  t.same(json(res), { accepted: 2, dropped: 0, ignored: 0, count: 2 });
  t.same((await area(c, fd)).subarray(8, 8 + 64), body);
});

t.test('a body that fills the area mid-chunk: exact drop counts (Linux kcov: a record that does not fit is dropped)', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 4, 1 + 10); // room for 10 PCs
  const first = pcs(1, 2, 3, 4, 5, 6);
  t.same(json(await c.binary(4, first)), { accepted: 6, dropped: 0, ignored: 0, count: 6 });
  // 7 more, arriving in chunks that cut records; only 4 fit, and the 4th ends mid-chunk.
  const second = pcs(7, 8, 9, 10, 11, 12, 13);
  const res = await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/4/events?kind=pc',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(second.length) }, payload: Readable.from(cut(second, 12, 29)),
  });
  t.same(json(res), { accepted: 4, dropped: 3, ignored: 0, count: 10 });
  const bytes = await area(c, fd);
  t.same(bytes.subarray(8), Buffer.concat([first, second.subarray(0, 32)]), 'the area holds exactly the first 10 PCs');
  t.same(json(await c.binary(4, pcs(14))), { accepted: 0, dropped: 1, ignored: 0, count: 10 }, 'a full area drops everything');
});

t.test('a malformed tail changes nothing: 400 EINVAL, bytes and count untouched', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 5, 1 + 16);
  await c.binary(5, pcs(0xaa, 0xbb));
  const before = await area(c, fd);
  const bad = Buffer.concat([pcs(1, 2, 3), Buffer.from([1, 2, 3])]); // 27 bytes
  expectProblem(t, await c.binary(5, bad), 400, 'EINVAL');
  const streamed = await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/5/events?kind=pc',
    headers: { 'content-type': 'application/octet-stream' }, payload: Readable.from(cut(bad, 8, 20)),
  });
  expectProblem(t, streamed, 400, 'EINVAL');
  expectProblem(t, await c.binary(5, pcs(1, 2, 3), 'cmp'), 400, 'EINVAL'); // 24 bytes: not whole 32-byte CMP records
  t.same(await area(c, fd), before, 'area bytes untouched');
  t.equal(json(await c.descriptor(fd)).count, 2, 'count unchanged');
});

t.test('Content-Length that does not match the body: 400 EINVAL, nothing stored', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 6, 1 + 16);
  const before = await area(c, fd);
  const body = pcs(1, 2, 3, 4);
  for (const declared of [body.length + 8, body.length - 8]) {
    const res = await app.inject({
      method: 'POST', url: '/v1/kernels/default/threads/6/events?kind=pc',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(declared) }, payload: Readable.from(cut(body, 9)),
    });
    expectProblem(t, res, 400, 'EINVAL');
  }
  t.same(await area(c, fd), before, 'area untouched');
  t.equal(json(await c.descriptor(fd)).count, 0);
});

t.test('fast checks give way to zod: odd spellings are handled as zod handles them', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 9, 1 + 8);
  // Not on the fast path, still valid for z.coerce: leading zero in the tid.
  const res = await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/09/events', headers: { 'content-type': 'application/octet-stream' }, payload: pcs(1),
  });
  t.same(json(res), { accepted: 1, dropped: 0, ignored: 0, count: 1 });
  expectProblem(t, await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/9/events?kind=bogus', headers: { 'content-type': 'application/octet-stream' }, payload: pcs(1),
  }), 400, 'EINVAL');
  expectProblem(t, await app.inject({
    method: 'POST', url: '/v1/kernels/default/threads/9/events?kind=pc&extra=1', headers: { 'content-type': 'application/octet-stream' }, payload: pcs(1),
  }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'PUT', url: `/v1/kernels/default/descriptors/${fd}/coverage/count`, payload: { count: -1 } }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'PUT', url: `/v1/kernels/default/descriptors/${fd}/coverage/count`, payload: { count: 1, x: 1 } }), 400, 'EINVAL');
  t.same(json(await app.inject({ method: 'PUT', url: `/v1/kernels/default/descriptors/${fd}/coverage/count`, payload: { count: 3 } })), { count: 3, words: 9 });
  expectProblem(t, await c.ioctl(fd, 'KCOV_RESET_TRACE', 9, 1.5), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'POST', url: `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_RESET_TRACE`, payload: { tid: 9, arg: 0, x: 1 } }), 400, 'EINVAL');
  const ok = await c.ok(fd, 'KCOV_RESET_TRACE', 9, 0);
  t.equal(ok.ret, 0);
  t.equal(ok.descriptor.count, 0, 'the ioctl reply carries the descriptor view');
  expectProblem(t, await c.coverage(fd, 'application/json', '?format=nope'), 400, 'EINVAL');
  t.equal(json(await c.coverage(fd, 'application/json', '?format=json&mode=pc&reset=false')).count, 0);
});

t.test('JSON and text snapshots keep their shapes (64-bit values as unpadded lowercase hex)', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 2, 1 + 4);
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(0xffffffff81000010n, 0);
  b.writeBigUInt64LE(0n, 8);
  b.writeBigUInt64LE(0x100000000n, 16);
  await c.binary(2, b);
  const res = await c.coverage(fd);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(json(res), { mode: 'pc', count: 3, words: 5, pcs: ['0xffffffff81000010', '0x0', '0x100000000'] });
  const text = await c.coverage(fd, 'text/plain');
  t.match(text.headers['content-type'], /^text\/plain/);
  t.equal(text.body, '0xffffffff81000010\n0x0\n0x100000000\n');
});
