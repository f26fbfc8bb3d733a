/**
 * The dashboard in a real headless chromium: the page loads from the app (no
 * CDN), shows what the API holds, and follows events posted through the API
 * live: the count in the descriptor table and the coverage chart both move.
 */
import t from 'tap';
import { listenApp, type LiveServer } from '../live.js';
import { missingBrowser, openBrowser, outputPath, type Tab } from './browser.js';

const missing = missingBrowser();
if (missing !== null) {
  // CI must run it: .ci/run installs chromium. Elsewhere it is skipped, saying why.
  if (process.env.CI === 'true') t.fail(`CI=true and ${missing}`);
  else t.plan(0, missing);
} else {
  await main();
}

async function api(s: LiveServer, method: string, path: string, body?: unknown, token?: string): Promise<any> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(s.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text === '' ? null : JSON.parse(text);
}

/** A Linux descriptor of `words` entries, enabled in PC mode by thread `tid`. */
async function tracing(s: LiveServer, tid: number, words: number, token?: string): Promise<number> {
  const { fd } = await api(s, 'POST', '/v1/kernels/default/descriptors', { tid }, token);
  await api(s, 'POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: words }, token);
  await api(s, 'POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' }, token);
  return fd;
}

function pcs(from: number, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `0xffffffff8100${(from + i).toString(16).padStart(4, '0')}`);
}

const countCell = (fd: number) => `section[data-kernel="default"] tr[data-fd="${fd}"] td.count`;
const chart = 'section[data-kernel="default"] .chart';

async function countShown(b: Tab, fd: number, want: number): Promise<void> {
  await b.page.waitForFunction(([sel, n]) => (globalThis as any).document.querySelector(sel)?.getAttribute('data-count') === n,
    [countCell(fd), String(want)] as const);
}

/** The chart's kernel line (its newest sample) is at `want`. */
async function totalCharted(b: Tab, want: number): Promise<void> {
  await b.page.waitForFunction(([sel, n]) => (globalThis as any).document.querySelector(sel)?.getAttribute('data-total') === n,
    [chart, String(want)] as const);
}

async function main(): Promise<void> {
  // One browser for both tests (start-up is most of their time); each test its own tab.
  // The two apps listen on different ports, so their pages share no storage.
  const browser = await openBrowser();
  t.teardown(() => browser.close());

  t.test('the page follows events posted through the API', async (t) => {
    const s = await listenApp(t, { KCOV_UI_SAMPLE_MS: '40' });
    const fd = await tracing(s, 1, 256);
    const b = await browser.tab();
    try {
      const res = await b.page.goto(`${s.url}/ui`);
      t.equal(res?.status(), 200, '/ui is served');
      await countShown(b, fd, 0);
      t.match(await b.page.textContent(`section[data-kernel="default"] tr[data-fd="${fd}"] td.state`), 'TRACE_PC', 'Linux state name');
      const samples0 = Number(await b.page.getAttribute(chart, 'data-samples'));
      const canvas0 = await b.page.$eval(`${chart} canvas`, (c: any) => c.toDataURL());

      await api(s, 'POST', '/v1/kernels/default/threads/1/events', { pcs: pcs(0, 3) });
      await countShown(b, fd, 3);
      t.equal(await b.page.textContent(countCell(fd)), '3', 'the new count is on the page');
      await totalCharted(b, 3);
      t.ok(Number(await b.page.getAttribute(chart, 'data-samples')) > samples0, 'the chart has a new sample');
      const canvas1 = await b.page.$eval(`${chart} canvas`, (c: any) => c.toDataURL());
      t.not(canvas1, canvas0, 'the chart was redrawn');

      // A second descriptor and a few more rounds: a curve with steps, and a full area.
      const fd2 = await tracing(s, 2, 8);
      for (let i = 1; i <= 4; i++) {
        await api(s, 'POST', '/v1/kernels/default/threads/1/events', { pcs: pcs(10 * i, 5 * i) });
        await api(s, 'POST', '/v1/kernels/default/threads/2/events', { pcs: pcs(100 + i, 3) });
        await new Promise((r) => setTimeout(r, 60));
      }
      // Remote coverage: a softirq section on CPU 1 lands in that CPU's area, then in fd3's.
      const { fd: fd3 } = await api(s, 'POST', '/v1/kernels/default/descriptors', { tid: 3 });
      await api(s, 'POST', `/v1/kernels/default/descriptors/${fd3}/ioctl/KCOV_INIT_TRACE`, { tid: 3, arg: 128 });
      await api(s, 'POST', `/v1/kernels/default/descriptors/${fd3}/ioctl/KCOV_REMOTE_ENABLE`,
        { tid: 3, arg: { trace_mode: 'pc', area_size: 128, handles: ['0x0100000000000001'], common_handle: '0x2a' } });
      await api(s, 'POST', '/v1/kernels/default/remotes/0x0100000000000001/events?context=softirq&cpu=1', { pcs: pcs(200, 9) });
      await countShown(b, fd3, 9);
      await countShown(b, fd, 3 + 5 + 10 + 15 + 20);
      await countShown(b, fd2, 7); // 8 words: the count word and 7 records, the rest dropped
      t.match(await b.page.getAttribute(`section[data-kernel="default"] tr[data-fd="${fd2}"] td.fill`, 'class'), /full/, 'a full area is marked');
      await totalCharted(b, 53 + 7 + 9);
      const samples = Number(await b.page.getAttribute(chart, 'data-samples'));
      t.ok(samples >= samples0 + 3, `the chart grew: ${samples0} -> ${samples} samples`);
      t.equal(await b.page.locator(`${chart} .u-legend .u-series`).count(), 4 + 1, 'legend: time, the kernel, three descriptors');
      t.match(await b.page.textContent(`section[data-kernel="default"] tr[data-fd="${fd3}"] td.remote`), '0x100000000000001 · common 0x2a');
      t.match(await b.page.textContent('section[data-kernel="default"] table.remotes'), /0x100000000000001/, 'the remote is listed');
      t.match(await b.page.textContent('section[data-kernel="default"] table.cpus tr[data-cpu="1"]'), /9/, 'CPU 1\'s area holds the section\'s records');

      // After a reload the curve is still there: the history is the server's.
      await b.page.reload();
      await countShown(b, fd, 53);
      await countShown(b, fd3, 9);
      t.equal(Number(await b.page.getAttribute(chart, 'data-samples')), samples, 'same samples after a reload');

      await b.page.screenshot({ path: outputPath('ui.png'), fullPage: true });
      t.same(b.errors, [], 'no console errors (CSP violations included)');
    } finally {
      await b.page.close();
    }
  });

  t.test('with KCOV_TOKEN the page loads, asks for the token and sends it as a bearer', async (t) => {
    const token = 'tok-3f1c9a';
    const s = await listenApp(t, { KCOV_UI_SAMPLE_MS: '40', KCOV_TOKEN: token });
    const noToken = await fetch(`${s.url}/v1/kernels`);
    t.equal(noToken.status, 401, 'the API stays closed');
    const fd = await tracing(s, 1, 64, token);
    const b = await browser.tab();
    const sent: (string | undefined)[] = [];
    b.page.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/v1/')) sent.push(r.headers().authorization);
    });
    try {
      const res = await b.page.goto(`${s.url}/ui`);
      t.equal(res?.status(), 200, '/ui itself needs no token');
      await b.page.waitForSelector('#auth:not([hidden])');
      t.match(await b.page.textContent('#auth-why'), /needs its KCOV_TOKEN/);

      await b.page.fill('#token', 'wrong');
      await b.page.click('#auth button[type=submit]');
      await b.page.waitForFunction(() => /refused/.test((globalThis as any).document.getElementById('auth-why').textContent)
        && !(globalThis as any).document.getElementById('auth').hidden);
      t.pass('a wrong token is refused and asked for again');

      await b.page.fill('#token', token);
      await b.page.click('#auth button[type=submit]');
      await countShown(b, fd, 0);
      await api(s, 'POST', '/v1/kernels/default/threads/1/events', { pcs: pcs(0, 5) }, token);
      await countShown(b, fd, 5);
      t.ok(sent.includes(`Bearer ${token}`), 'API calls carry the bearer token');
      t.ok(sent.every((h) => h === undefined || h === 'Bearer wrong' || h === `Bearer ${token}`), 'nothing else is sent as a token');
      // The token is kept for the tab: a reload asks no more.
      await b.page.reload();
      await countShown(b, fd, 5);
      t.equal(await b.page.isHidden('#auth'), true, 'no token form after a reload');
      await b.page.screenshot({ path: outputPath('ui-auth.png') });
      // Only the 401s of the refused calls may show as console errors.
      t.same(b.errors.filter((e) => !/401/.test(e)), [], 'no other console errors');
    } finally {
      await b.page.close();
    }
  });
}
