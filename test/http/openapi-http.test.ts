/**
 * What the OpenAPI document promises beyond the routes themselves: compression
 * both ways, ETags on snapshots, docs that work with KCOV_TOKEN, process metrics.
 */
import t from 'tap';
import { request as httpRequest } from 'node:http';
import { gunzipSync, gzipSync, deflateSync } from 'node:zlib';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { Client, expectProblem, json, makeApp, pcs } from '../helpers.js';

/** A default-kernel descriptor enabled in PC mode by tid 1, with `n` PCs recorded. */
async function traced(c: Client, n: number, words = 1 << 16): Promise<number> {
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, words);
  await c.ok(fd, 'KCOV_ENABLE', 1, 'pc');
  if (n > 0) {
    const res = await c.binary(1, pcs(...Array.from({ length: n }, (_, i) => 0xffffffff81000000 + i * 16)));
    if (res.statusCode !== 200) throw new Error(res.body);
  }
  return fd;
}

const coverageUrl = (fd: number, q = '') => `/v1/kernels/default/descriptors/${fd}/coverage${q}`;

t.test('compression of replies', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 20_000);

  const plain = await app.inject({ url: coverageUrl(fd) });
  const gz = await app.inject({ url: coverageUrl(fd), headers: { 'accept-encoding': 'gzip' } });
  t.equal(gz.statusCode, 200);
  t.equal(gz.headers['content-encoding'], 'gzip', 'a large JSON snapshot is gzipped when asked');
  t.match(String(gz.headers.vary), /accept-encoding/i);
  const unzipped = gunzipSync(gz.rawPayload);
  t.equal(unzipped.toString(), plain.body, 'same bytes once decoded');
  t.ok(gz.rawPayload.length * 4 < plain.rawPayload.length, `smaller: ${gz.rawPayload.length} of ${plain.rawPayload.length}`);
  t.equal(plain.headers['content-encoding'], undefined, 'nothing encoded without Accept-Encoding');

  const text = await app.inject({ url: coverageUrl(fd), headers: { accept: 'text/plain', 'accept-encoding': 'deflate' } });
  t.equal(text.headers['content-encoding'], 'deflate', 'text too, with the coding asked');

  const small = await app.inject({ url: '/v1/kernels/default', headers: { 'accept-encoding': 'gzip' } });
  t.equal(small.headers['content-encoding'], undefined, 'below KCOV_COMPRESS_THRESHOLD nothing is encoded');

  const bin = await app.inject({ url: coverageUrl(fd), headers: { accept: 'application/octet-stream', 'accept-encoding': 'gzip' } });
  t.equal(bin.headers['content-encoding'], undefined, 'binary is not encoded unless KCOV_COMPRESS=all');
  t.equal(bin.rawPayload.length, (1 << 16) * 8);

  const br = await app.inject({ url: coverageUrl(fd), headers: { 'accept-encoding': 'br' } });
  t.equal(br.headers['content-encoding'], undefined, 'brotli is not offered');
});

t.test('KCOV_COMPRESS=all encodes binary, but never a part (206); KCOV_COMPRESS=off nothing', async (t) => {
  const app = await makeApp(t, { KCOV_COMPRESS: 'all' });
  const c = new Client(app);
  const fd = await traced(c, 100);
  const accept = { accept: 'application/octet-stream', 'accept-encoding': 'gzip' };
  const whole = await app.inject({ url: coverageUrl(fd), headers: accept });
  t.equal(whole.headers['content-encoding'], 'gzip');
  const area = gunzipSync(whole.rawPayload);
  t.equal(area.length, (1 << 16) * 8);
  t.equal(area.readBigUInt64LE(0), 100n, 'the count word survives the round trip');
  const part = await app.inject({ url: coverageUrl(fd), headers: { ...accept, range: 'bytes=0-4095' } });
  t.equal(part.statusCode, 206);
  t.equal(part.headers['content-encoding'], undefined, 'Content-Range counts area bytes: a part is never encoded');
  t.equal(part.rawPayload.length, 4096);

  const off = await makeApp(t, { KCOV_COMPRESS: 'off' });
  const oc = new Client(off);
  const ofd = await traced(oc, 5000);
  const res = await off.inject({ url: coverageUrl(ofd), headers: { 'accept-encoding': 'gzip' } });
  t.equal(res.headers['content-encoding'], undefined);
  t.throws(() => loadConfig({ KCOV_COMPRESS: 'sometimes' }), /KCOV_COMPRESS/);
});

t.test('a real socket: Accept-Encoding gzip of a large JSON snapshot gets Content-Encoding gzip', async (t) => {
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '1' }) });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const fd = await traced(new Client(app), 60_000, 1 << 17);
  const { port } = app.server.address() as { port: number };
  const res = await new Promise<{ headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
    httpRequest({ host: '127.0.0.1', port, path: coverageUrl(fd), headers: { 'accept-encoding': 'gzip' } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (ch: Buffer) => chunks.push(ch));
      r.on('end', () => resolve({ headers: r.headers, body: Buffer.concat(chunks) }));
    }).on('error', reject).end();
  });
  t.equal(res.headers['content-encoding'], 'gzip');
  const doc = JSON.parse(gunzipSync(res.body).toString());
  t.equal(doc.pcs.length, 60_000);
  t.ok(res.body.length < 400_000, `60k PCs in ${res.body.length} bytes on the wire`);
  // The streamed (compressed) reply has no Content-Length; the metric counts what was sent.
  const metrics = (await app.inject({ url: '/metrics' })).body;
  const sent = Number(/^kcovd_http_response_bytes_total\{route="\/v1\/kernels\/:kernel\/descriptors\/:fd\/coverage"\} (\d+)/m.exec(metrics)?.[1]);
  t.equal(sent, res.body.length, 'response bytes are the encoded bytes');
});

t.test('gzip request bodies: decoded before parsing, limited by their decoded size', async (t) => {
  const app = await makeApp(t, { KCOV_BODY_LIMIT: '1M' });
  const c = new Client(app);
  const fd = await traced(c, 0);
  const events = (payload: Buffer, headers: Record<string, string>) =>
    app.inject({ method: 'POST', url: '/v1/kernels/default/threads/1/events', headers, payload });

  const j = await events(gzipSync(JSON.stringify({ pcs: ['0x10', '0x20'] })), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
  t.equal(j.statusCode, 200, j.body);
  t.equal(json(j).accepted, 2, 'gzip JSON events');
  const b = await events(gzipSync(pcs(0x30, 0x40, 0x50)), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
  t.equal(b.statusCode, 200, b.body);
  t.equal(json(b).accepted, 3, 'gzip binary events');
  const d = await events(deflateSync(pcs(0x60)), { 'content-type': 'application/octet-stream', 'content-encoding': 'deflate' });
  t.equal(json(d).accepted, 1, 'deflate');
  const received = /^kcovd_http_request_bytes_total\{route="\/v1\/kernels\/:kernel\/threads\/:tid\/events"\} (\d+)/m.exec((await app.inject({ url: '/metrics' })).body);
  t.ok(Number(received?.[1]) > 0, 'request bytes of encoded bodies are counted');
  t.same((await c.cover(fd)).pcs, ['0x10', '0x20', '0x30', '0x40', '0x50', '0x60']);

  // 64 MiB of zeros is 64 kB of gzip: past the 1 MiB limit once decoded, so 413, and nothing applied.
  const bomb = gzipSync(Buffer.alloc(64 << 20));
  t.ok(bomb.length < 128 << 10, `bomb is ${bomb.length} bytes`);
  const before = process.memoryUsage().arrayBuffers;
  const big = await events(bomb, { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
  expectProblem(t, big, 413, json(big).errno);
  t.ok(process.memoryUsage().arrayBuffers - before < 16 << 20, 'the decoded bomb was never held');
  const jbomb = await events(gzipSync(Buffer.from(`{"pcs":[${'"0x1",'.repeat(300_000)}"0x1"]}`)), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
  t.equal(jbomb.statusCode, 413, 'JSON too');
  t.equal((await c.cover(fd)).count, 6, 'nothing of a refused body was applied');

  const bad = await events(Buffer.from('not gzip at all'), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
  expectProblem(t, bad, 400, 'EINVAL');
  const zstd = await events(pcs(1), { 'content-type': 'application/octet-stream', 'content-encoding': 'zstd' });
  expectProblem(t, zstd, 415, 'EINVAL');
  const id = await events(pcs(0x70), { 'content-type': 'application/octet-stream', 'content-encoding': 'identity' });
  t.equal(json(id).accepted, 1, 'identity is no coding');
  // The app still answers on the same footing after all that.
  t.equal((await c.cover(fd)).count, 7);
});

t.test('ETag and If-None-Match on coverage', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await traced(c, 3, 64);
  const get = (headers: Record<string, string> = {}, q = '') => app.inject({ url: coverageUrl(fd, q), headers });

  const first = await get();
  const tag = String(first.headers.etag);
  t.match(tag, /^W\/".+"$/, 'a weak ETag');
  const again = await get({ 'if-none-match': tag });
  t.equal(again.statusCode, 304, 'unchanged: 304');
  t.equal(again.body, '', 'with no body');
  t.equal(again.headers.etag, tag);
  t.equal((await get({ 'if-none-match': `"other", ${tag}` })).statusCode, 304, 'a list of tags');
  t.equal((await get({ 'if-none-match': '*' })).statusCode, 304);
  t.equal((await get({ 'if-none-match': tag.slice(2) })).statusCode, 304, 'compared weakly');

  const text = await get({ accept: 'text/plain' });
  t.not(text.headers.etag, tag, 'text is another representation');
  const bin = await get({ accept: 'application/octet-stream' });
  t.not(bin.headers.etag, tag);
  t.equal((await get({ accept: 'application/octet-stream', 'if-none-match': String(bin.headers.etag) })).statusCode, 304);

  await c.binary(1, pcs(0x99));
  const changed = await get({ 'if-none-match': tag });
  t.equal(changed.statusCode, 200, 'an event changes the tag');
  t.not(changed.headers.etag, tag);

  // Stale records past the count are part of the binary area: same count, other bytes, other tag.
  const binTag = String((await get({ accept: 'application/octet-stream' })).headers.etag);
  await app.inject({ method: 'PUT', url: `${coverageUrl(fd)}/count`, payload: { count: 2 } });
  await c.binary(1, pcs(0xaa, 0xbb));
  await app.inject({ method: 'PUT', url: `${coverageUrl(fd)}/count`, payload: { count: 4 } });
  t.equal((await c.cover(fd)).count, 4);
  const binNow = await get({ accept: 'application/octet-stream', 'if-none-match': binTag });
  t.equal(binNow.statusCode, 200, 'rewritten records change the binary tag');

  const now = String((await get()).headers.etag);
  const reset = await get({ 'if-none-match': now }, '?reset=true');
  t.equal(reset.statusCode, 200, 'a read with reset=true is never 304');
  t.equal(json(reset).count, 4);
  t.equal((await c.cover(fd)).count, 0, 'and it did reset');

  const rangeTag = String((await get({ accept: 'application/octet-stream' })).headers.etag);
  const ranged = await get({ accept: 'application/octet-stream', range: 'bytes=0-7', 'if-none-match': rangeTag });
  t.equal(ranged.statusCode, 304, 'If-None-Match is weighed before Range');
  const part = await get({ accept: 'application/octet-stream', range: 'bytes=0-7' });
  t.equal(part.statusCode, 206);
  t.equal(part.headers.etag, rangeTag, 'a part carries the tag of the whole');
  const ifRange = await get({ accept: 'application/octet-stream', range: 'bytes=0-7', 'if-range': rangeTag });
  t.equal(ifRange.statusCode, 200, 'If-Range with a weak tag: the whole area');
  t.equal(ifRange.rawPayload.length, 64 * 8);

  // Long-poll with the tag: nothing changed within the wait, so 304.
  const cur = String((await get()).headers.etag);
  const polled = await get({ 'if-none-match': cur }, '?wait=50');
  t.equal(polled.statusCode, 304, 'a poll that saw no change is 304');
  const poll = get({ 'if-none-match': cur }, '?wait=5000');
  await new Promise((r) => setTimeout(r, 20));
  await c.binary(1, pcs(0xcc));
  const woke = await poll;
  t.equal(woke.statusCode, 200, 'a poll woken by a change gets the new area');
  t.equal(json(woke).count, 1);
});

t.test('docs with KCOV_TOKEN: 401 unless KCOV_DOCS_PUBLIC; the API stays protected either way', async (t) => {
  const token = 'docs-token';
  const closed = await makeApp(t, { KCOV_TOKEN: token });
  expectProblem(t, await closed.inject({ url: '/docs/' }), 401, 'EACCES');
  expectProblem(t, await closed.inject({ url: '/openapi.json' }), 401, 'EACCES');
  t.equal((await closed.inject({ url: '/docs/', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);

  const open = await makeApp(t, { KCOV_TOKEN: token, KCOV_DOCS_PUBLIC: 'true' });
  const page = await open.inject({ url: '/docs/' });
  t.equal(page.statusCode, 200, '/docs/ is public');
  t.match(page.headers['content-type'], /text\/html/);
  for (const url of ['/docs', '/docs/json', '/openapi.json', '/docs/static/swagger-ui-bundle.js', '/docs/static/swagger-initializer.js']) {
    const res = await open.inject({ url });
    t.ok(res.statusCode < 400, `${url} ${res.statusCode}`);
  }
  const doc = json(await open.inject({ url: '/openapi.json' }));
  t.same(doc.components.securitySchemes.bearer, { ...doc.components.securitySchemes.bearer, type: 'http', scheme: 'bearer' }, 'Authorize: the bearer scheme');
  t.same(doc.security, [{ bearer: [] }]);
  t.same(doc.paths['/healthz'].get.security, [], 'probes need no token');
  expectProblem(t, await open.inject({ url: '/v1/kernels' }), 401, 'EACCES');
  expectProblem(t, await open.inject({ url: '/metrics' }), 401, 'EACCES');
  t.equal((await open.inject({ url: '/v1/kernels', headers: { authorization: `Bearer ${token}` } })).statusCode, 200);
  t.throws(() => loadConfig({ KCOV_DOCS_PUBLIC: 'maybe' }), /KCOV_DOCS_PUBLIC/);
});

t.test('/metrics: process and event-loop metrics in each app\'s own registry', async (t) => {
  const a = await makeApp(t);
  const b = await makeApp(t);
  await a.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'only-in-a', dialect: 'linux' } });
  // The event-loop lag gauge is set one tick after a scrape.
  await a.inject({ url: '/metrics' });
  await new Promise((r) => setImmediate(r));
  const text = (await a.inject({ url: '/metrics' })).body;
  for (const name of ['process_resident_memory_bytes', 'process_cpu_seconds_total', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'kcovd_kernels']) {
    t.match(text, new RegExp(`^${name}[ {]`, 'm'), name);
  }
  const rss = Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1]);
  t.ok(rss > 1 << 20, `RSS ${rss}`);
  t.match(text, /kernel="only-in-a"/);
  const other = (await b.inject({ url: '/metrics' })).body;
  t.notMatch(other, /only-in-a/, 'another app has its own kcov figures');
  t.match(other, /^process_resident_memory_bytes /m, 'and the same process figures');
});
