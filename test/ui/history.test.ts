/** The dashboard's server side: its history of samples, GET /v1/history, and the open /ui assets. */
import { EventEmitter } from 'node:events';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { Engine } from '../../src/engine/engine.js';
import { CoverageHistory } from '../../src/http/ui/history.js';
import { Client, expectProblem, json, makeApp, pcs } from '../helpers.js';

function engine(memoryLimit = 1 << 20): Engine {
  return new Engine({ dialect: 'linux', ncpus: 2, memoryLimit });
}

/** A Linux descriptor of `words` entries enabled in PC mode by `tid`, straight on the engine. */
function tracing(e: Engine, tid: number, words = 64): number {
  const k = e.kernel('default');
  const d = k.open(tid);
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', tid, words);
  k.ioctl(d.fd, 'KCOV_ENABLE', tid, 'pc');
  return d.fd;
}

function post(e: Engine, tid: number, n: number): void {
  const body = pcs(...Array.from({ length: n }, (_, i) => 0x1000 + i));
  e.kernel('default').eventsBinary(tid, 'pc', [body], body.length);
}

const noClient = new EventEmitter() as unknown as { once(ev: 'close', fn: () => void): unknown; off(ev: 'close', fn: () => void): unknown };

t.test('a sample is taken when a count moves, not otherwise', async (t) => {
  const e = engine();
  const h = new CoverageHistory(e, { points: 8, sampleMs: 0 });
  t.equal(h.tick(), true, 'the first tick samples');
  t.equal(h.tick(), false, 'nothing moved');
  const fd = tracing(e, 1);
  t.equal(h.tick(), true, 'a new descriptor');
  t.equal(h.tick(), false);
  post(e, 1, 5);
  t.equal(h.tick(), true, 'its count moved');
  const r = h.since(0);
  t.equal(r.seq, 3);
  t.equal(r.t.length, 3);
  t.same(r.series.map((s) => [s.kernel, s.fd]), [['default', null], ['default', fd]], 'kernel first, then its descriptors');
  t.same(r.series[0]!.values, [0, 0, 5], 'the kernel: the sum of its counts');
  t.same(r.series[1]!.values, [null, 0, 5], 'the descriptor: null before it existed');
  t.same(h.since(2).series[1]!.values, [5], 'after=2: only the newer sample');
  t.same(h.since(3).t, [], 'after=seq: nothing new');
  h.close();
});

t.test('an ioctl that moves no count still marks a sample (Kernel.watch)', async (t) => {
  const e = engine();
  const h = new CoverageHistory(e, { points: 8, sampleMs: 0 });
  const fd = tracing(e, 1);
  h.tick();
  t.equal(h.tick(), false);
  e.kernel('default').ioctl(fd, 'KCOV_DISABLE', 1, 0);
  t.equal(h.tick(), true, 'the state changed; the page must hear of it');
  h.close();
});

t.test('an idle tick walks nothing, but a new thread or kernel still takes a sample', async (t) => {
  const e = engine();
  const h = new CoverageHistory(e, { points: 8, sampleMs: 0 });
  tracing(e, 1);
  h.tick();
  t.equal(h.tick(), false, 'idle');
  e.kernel('default').createThread(7);
  t.equal(h.tick(), true, 'a thread came: the page shows thread counts');
  e.createKernel({ name: 'other', dialect: 'openbsd' });
  t.equal(h.tick(), true, 'a kernel came');
  t.same(h.since(0).series.map((s) => s.kernel + ':' + s.fd), ['default:null', 'default:3', 'other:null']);
  e.deleteKernel('other');
  e.createKernel({ name: 'other', dialect: 'openbsd' });
  t.equal(h.tick(), true, 'a kernel deleted and made again under the same name is another kernel');
  h.close();
});

t.test('held samples are bounded: past `points` every other one goes, the newest stays', async (t) => {
  const e = engine();
  const h = new CoverageHistory(e, { points: 8, sampleMs: 0 });
  tracing(e, 1, 1024);
  for (let i = 1; i <= 20; i++) {
    post(e, 1, 1);
    h.tick();
  }
  const r = h.since(0);
  t.ok(r.t.length <= 8, `${r.t.length} samples held`);
  t.ok(r.t.length >= 4);
  const fdValues = r.series[1]!.values as number[];
  t.equal(fdValues[fdValues.length - 1], 20, 'the newest sample is kept');
  t.same([...fdValues].sort((a, b) => a - b), fdValues, 'still in order');
  for (let i = 1; i < r.t.length; i++) t.ok(r.t[i]! >= r.t[i - 1]!, 'times ascend');
  h.close();
});

t.test('the history is charged to the memory budget and released', async (t) => {
  const e = engine();
  // Everything the kernels hold (areas, threads, descriptors, the cover union): all but 'other'.
  const kernelBytes = () => e.budget.used - e.budget.breakdown().other;
  const h = new CoverageHistory(e, { points: 16, sampleMs: 0 });
  h.tick();
  // times + seqs + the default kernel's series, 16 doubles each.
  t.equal(h.charged, 3 * 16 * 8);
  t.equal(e.budget.used, kernelBytes() + h.charged, 'the budget holds areas and history');
  const fd = tracing(e, 1);
  h.tick();
  t.equal(h.charged, 4 * 16 * 8, 'one more series');
  t.equal(e.budget.used, kernelBytes() + h.charged);
  t.equal(e.budget.breakdown().other, h.charged, 'in the budget\'s breakdown as other');
  t.same(e.checkInvariants(), [], 'the invariant checker sees it');
  const k = e.kernel('default');
  k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
  k.close(fd);
  h.tick();
  t.equal(h.charged, 3 * 16 * 8, 'a closed descriptor\'s series is released');
  e.deleteKernel('default');
  h.tick();
  t.equal(h.charged, 2 * 16 * 8, 'a deleted kernel\'s series too');
  h.close();
  t.equal(h.charged, 0);
  t.equal(e.budget.used, kernelBytes(), 'close gives every byte back');
});

t.test('the history takes at most 1/16 of the budget', async (t) => {
  const e = engine(64 * 1024);
  // 16 doubles a series: 128 bytes; 4 KiB allowed: 32 arrays, 2 of them times and seqs.
  const h = new CoverageHistory(e, { points: 16, sampleMs: 0 });
  for (let tid = 1; tid <= 40; tid++) tracing(e, tid, 8);
  h.tick();
  t.equal(h.charged, 4096);
  t.equal(h.since(0).series.length, 30);
  t.equal(h.untracked, 41 - 30, 'the kernel and 40 descriptors, 30 charted');
  h.close();
});

t.test('what the budget cannot hold is counted, not tracked, and nothing throws', async (t) => {
  // 96 bytes left: the history's times and seqs and one series of 4 doubles.
  const e = engine(64 * 1024);
  for (let tid = 1; tid <= 32; tid++) tracing(e, tid, 8);
  e.kernel('default').allocArea((e.budget.limit - e.budget.used - 96) / 8, 'filler');
  t.equal(e.budget.limit - e.budget.used, 96);
  const h = new CoverageHistory(e, { points: 4, sampleMs: 0 });
  h.tick();
  t.equal(h.since(0).series.length, 1, 'one series fitted');
  t.equal(h.since(0).untracked, 32, 'the other 32 are counted');
  t.equal(e.budget.used, e.budget.limit, 'charged up to the limit, never past');
  h.close();
});

t.test('wait answers on the next sample, at once for another seq, at close', async (t) => {
  const e = engine();
  const h = new CoverageHistory(e, { points: 8, sampleMs: 0 });
  h.tick();
  tracing(e, 1);
  let woke = false;
  const p = h.wait(h.seq, 60_000, noClient).then(() => {
    woke = true;
  });
  await new Promise((r) => setImmediate(r));
  t.equal(woke, false, 'still waiting');
  h.tick();
  await p;
  t.equal(woke, true, 'a new sample wakes it');
  const started = Date.now();
  await h.wait(h.seq + 5, 60_000, noClient);
  t.ok(Date.now() - started < 1000, 'a seq from another start answers at once');
  const q = h.wait(h.seq, 60_000, noClient);
  h.close();
  await q;
  t.pass('close answers waiters');
});

t.test('GET /v1/history long-polls until the sampler takes a sample', async (t) => {
  const app = await makeApp(t, { KCOV_UI_SAMPLE_MS: '20' });
  const c = new Client(app);
  const first = json(await app.inject({ method: 'GET', url: '/v1/history' }));
  t.equal(first.sample_ms, 20);
  t.equal(first.points, 512);
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_ENABLE', 1, 'pc');
  const waiting = app.inject({ method: 'GET', url: `/v1/history?after=${first.seq}&wait=10000` });
  await c.binary(1, pcs(1, 2, 3));
  let r = json(await waiting);
  // The open and the events may land in one sample or two.
  while (r.series.find((s: any) => s.fd === fd)?.values.at(-1) !== 3) {
    r = json(await app.inject({ method: 'GET', url: `/v1/history?after=${r.seq}&wait=10000` }));
  }
  t.ok(r.seq > first.seq, 'a newer sample');
  t.equal(r.series.find((s: any) => s.fd === null).values.at(-1), 3, 'the kernel total');
  expectProblem(t, await app.inject({ method: 'GET', url: '/v1/history?after=-1' }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'GET', url: '/v1/history?bogus=1' }), 400, 'EINVAL');
});

t.test('/ui and its assets are open with KCOV_TOKEN; the data routes are not', async (t) => {
  const app = await makeApp(t, { KCOV_TOKEN: 'sekrit' });
  const page = await app.inject({ method: 'GET', url: '/ui' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], /script-src 'self'/);
  t.notMatch(page.body, /sekrit/, 'no secret in the page');
  for (const [url, type] of [['/ui/app.js', /javascript/], ['/ui/uplot.js', /javascript/], ['/ui/style.css', /css/], ['/ui/uplot.css', /css/]] as const) {
    const res = await app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 200, url);
    t.match(res.headers['content-type'], type, `${url} type`);
    t.ok(res.body.length > 100, `${url} has a body`);
  }
  const script = (await app.inject({ method: 'GET', url: '/ui/app.js' })).body;
  t.match(script, /new uPlot\(/, 'the page script draws with uPlot');
  t.notMatch(script + page.body, /(?:src|href)="https?:|fetch\(['"]https?:/, 'no CDN: nothing is fetched from another origin');
  const etag = String((await app.inject({ method: 'GET', url: '/ui/app.js' })).headers.etag);
  t.match(etag, /^"[\w-]+"$/, 'assets carry an ETag');
  const again = await app.inject({ method: 'GET', url: '/ui/app.js', headers: { 'if-none-match': etag } });
  t.equal(again.statusCode, 304, 'a reload revalidates with the ETag');
  const slash = await app.inject({ method: 'GET', url: '/ui/' });
  t.equal(slash.statusCode, 308);
  t.equal(slash.headers.location, '/ui');
  expectProblem(t, await app.inject({ method: 'GET', url: '/v1/history' }), 401, 'EACCES');
  const ok = await app.inject({ method: 'GET', url: '/v1/history', headers: { authorization: 'Bearer sekrit' } });
  t.equal(ok.statusCode, 200);
});

t.test('KCOV_UI_SAMPLE_MS=0: no history, the route still answers', async (t) => {
  const app = await makeApp(t, { KCOV_UI_SAMPLE_MS: '0' });
  const r = json(await app.inject({ method: 'GET', url: '/v1/history' }));
  t.same({ seq: r.seq, t: r.t, series: r.series, sample_ms: r.sample_ms }, { seq: 0, t: [], series: [], sample_ms: 0 });
  const started = Date.now();
  await app.inject({ method: 'GET', url: '/v1/history?wait=50' });
  t.ok(Date.now() - started >= 40, 'a long-poll with nothing to wait for runs to its deadline');
});

t.test('KCOV_UI_HISTORY and KCOV_UI_SAMPLE_MS are checked at start-up', async (t) => {
  t.same((({ uiHistory, uiSampleMs }) => ({ uiHistory, uiSampleMs }))(loadConfig({})), { uiHistory: 512, uiSampleMs: 1000 }, 'defaults');
  t.throws(() => loadConfig({ KCOV_UI_HISTORY: '513' }), /must be even/);
  t.throws(() => loadConfig({ KCOV_UI_HISTORY: '2' }), /outside 4\.\.65536/);
  t.throws(() => loadConfig({ KCOV_UI_SAMPLE_MS: '-1' }), /not a whole number/);
  t.equal(loadConfig({ KCOV_UI_SAMPLE_MS: '0' }).uiSampleMs, 0, '0 turns sampling off');
});
