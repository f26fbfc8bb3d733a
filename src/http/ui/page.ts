/**
 * The dashboard page: HTML, style and script, served by ./index.ts at /ui.
 *
 * The script is the function `dashboard` below, sent as its own source text
 * (Function.prototype.toString of the compiled function), so it is written and
 * type-checked (loosely: the DOM is `any`, this project compiles without the DOM
 * lib) with the rest of the code, ships in dist/ with any tsc build, and needs no
 * bundler. It may use nothing from this module but browser globals and uPlot.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */
declare const document: any;
declare const window: any;
declare const sessionStorage: any;
declare const uPlot: any;

export function dashboard(): void {
  const WAIT_MS = 20000;
  const RETRY_MS = 2000;
  const TOKEN_KEY = 'kcovd-token';
  const COLORS = ['#1f4e9c', '#d9480f', '#2b8a3e', '#862e9c', '#c92a2a', '#0b7285', '#e67700', '#5c940d', '#a61e4d', '#364fc7'];

  interface Point { kernel: string; fd: number | null; values: (number | null)[] }
  const st = {
    token: (sessionStorage.getItem(TOKEN_KEY) as string | null) ?? '',
    boot: null as string | null,
    seq: 0,
    points: 512,
    sampleMs: 0,
    untracked: 0,
    t: [] as number[],
    series: new Map<string, Point>(),
    kernels: [] as any[],
    memory: null as { used: number; limit: number } | null,
    details: new Map<string, { descriptors: any[]; remotes: any[]; cpus: any[] }>(),
  };
  const charts = new Map<string, { plot: any; keys: string }>();

  const byId = (id: string): any => document.getElementById(id);

  function el(tag: string, attrs: Record<string, unknown> | null, ...children: unknown[]): any {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(typeof c === 'object' ? c : String(c));
    }
    return e;
  }

  function bytes(n: number): string {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
  }

  const num = (n: number | null | undefined): string => (n === null || n === undefined ? '—' : n.toLocaleString('en-US'));
  const plural = (n: number, what: string): string => n + ' ' + what + (n === 1 ? '' : 's');
  const keyOf = (kernel: string, fd: number | null): string => kernel + '\u0000' + (fd === null ? '' : String(fd));
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  function setStatus(kind: 'live' | 'auth' | 'error' | 'connecting', text: string): void {
    const s = byId('status');
    s.className = 'status ' + kind;
    s.textContent = text;
  }

  function resetHistory(): void {
    st.seq = 0;
    st.t = [];
    st.series = new Map();
  }

  /** GET a /v1 route as JSON, with the bearer token when there is one. */
  async function api(path: string): Promise<any> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (st.token !== '') headers.authorization = 'Bearer ' + st.token;
    const res = await fetch(path, { headers, cache: 'no-store' } as any);
    const boot = res.headers.get('kcovd-boot');
    if (boot !== null) {
      // Another start of the service: its history is not ours.
      if (st.boot !== null && boot !== st.boot) resetHistory();
      st.boot = boot;
    }
    if (!res.ok) {
      let detail = res.status + ' ' + res.statusText;
      try {
        const p: any = await res.json();
        detail = p.detail ?? p.title ?? detail;
      } catch {
        // not problem+json; keep the status line
      }
      const err: any = new Error(detail);
      err.status = res.status;
      throw err;
    }
    return res.json();
  }

  function merge(h: any): void {
    const n0 = st.t.length;
    st.points = h.points;
    st.sampleMs = h.sample_ms;
    st.untracked = h.untracked;
    st.seq = h.seq;
    for (const t of h.t) st.t.push(t);
    const next = new Map<string, Point>();
    for (const s of h.series) {
      const key = keyOf(s.kernel, s.fd);
      const old = st.series.get(key);
      const values = old !== undefined ? old.values : new Array(n0).fill(null);
      for (const v of s.values) values.push(v);
      next.set(key, { kernel: s.kernel, fd: s.fd, values });
    }
    st.series = next;
    // Bounded like the server: past twice its size, keep every other sample (newest kept).
    if (st.t.length > 2 * st.points) {
      const odd = (a: any[]) => a.filter((_, i) => (a.length - 1 - i) % 2 === 0);
      st.t = odd(st.t);
      for (const s of st.series.values()) s.values = odd(s.values);
    }
  }

  async function refresh(): Promise<void> {
    const list = await api('/v1/kernels');
    const details = new Map<string, { descriptors: any[]; remotes: any[]; cpus: any[] }>();
    const kernels: any[] = [];
    await Promise.all(list.kernels.map(async (k: any) => {
      const base = '/v1/kernels/' + encodeURIComponent(k.name);
      try {
        const [d, r, c] = await Promise.all([api(base + '/descriptors'), api(base + '/remotes'), api(base + '/cpus')]);
        details.set(k.name, { descriptors: d.descriptors, remotes: r.remotes, cpus: c.cpus });
        kernels.push(k);
      } catch (e: any) {
        if (e.status !== 404) throw e; // deleted meanwhile: gone from this render
      }
    }));
    const order = new Map<string, number>(list.kernels.map((k: any, i: number) => [k.name, i]));
    kernels.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
    st.kernels = kernels;
    st.memory = list.memory;
    st.details = details;
  }

  const NUMERIC = ['count', 'capacity', 'words'];
  function table(cls: string, head: string[], rows: any[][], empty: string): any {
    if (rows.length === 0) return el('p', { class: 'empty ' + cls }, empty);
    return el('table', { class: cls },
      el('thead', null, el('tr', null, ...head.map((h) => el('th', { class: NUMERIC.includes(h) ? 'num' : null }, h)))),
      el('tbody', null, ...rows.map((r) => el('tr', r[0], ...r.slice(1)))));
  }

  function fill(d: any): any {
    if (d.capacity === null || d.count === null || d.capacity === 0) return el('td', { class: 'fill' }, '—');
    const records = Math.min(d.count, d.capacity);
    const pct = (100 * records) / d.capacity;
    const full = d.count >= d.capacity;
    return el('td', { class: 'fill' + (full ? ' full' : ''), title: full ? 'full: further records are dropped' : '' },
      el('span', { class: 'bar' }, el('span', { class: 'in', 'data-pct': pct.toFixed(1) })),
      ' ' + (pct < 10 && pct > 0 ? pct.toFixed(1) : pct.toFixed(0)) + '%');
  }

  function cell(v: unknown): string {
    if (v === null || v === undefined) return '—';
    return typeof v === 'object' ? JSON.stringify(v) : String(v);
  }

  /** Linux KCOV_REMOTE_ENABLE handles, or a BSD subsystem:id attachment, in one line. */
  function remoteOf(r: any): string {
    if (r === null || r === undefined) return '—';
    if (Array.isArray(r.handles)) return r.handles.join(' ') + (r.common_handle !== undefined && r.common_handle !== '0x0' ? ' · common ' + r.common_handle : '');
    if (r.subsystem !== undefined) return r.subsystem + ':' + r.id;
    return cell(r);
  }

  function descriptorsTable(ds: any[]): any {
    return table('descriptors', ['fd', 'state', 'mode', 'owner', 'remote', 'count', 'capacity', 'words', 'full'],
      ds.map((d) => [{ 'data-fd': d.fd, class: d.closed ? 'closed' : null },
        el('td', null, String(d.fd)),
        el('td', { class: 'state' }, d.state + (d.closed ? ' (closed)' : '')),
        el('td', null, d.mode ?? '—'),
        el('td', null, d.owner === null ? '—' : String(d.owner)),
        el('td', { class: 'remote' }, remoteOf(d.remote)),
        el('td', { class: 'count num', 'data-count': d.count }, num(d.count)),
        el('td', { class: 'num' }, num(d.capacity)),
        el('td', { class: 'num' }, num(d.words)),
        fill(d)]),
      'no descriptors');
  }

  function remotesTable(rs: any[]): any {
    const cols: string[] = [];
    for (const r of rs) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
    return table('remotes', cols, rs.map((r) => [null, ...cols.map((c) => el('td', null, cell(r[c])))]), 'no remotes');
  }

  function cpusTable(cs: any[]): any {
    // Only CPUs whose area exists or that run a section: a 64-CPU kernel is mostly idle rows.
    const used = cs.filter((c) => c.words !== null || c.section !== null);
    return table('cpus', ['cpu', 'words', 'count', 'section'],
      used.map((c) => [{ 'data-cpu': c.cpu },
        el('td', null, String(c.cpu)), el('td', { class: 'num' }, num(c.words)), el('td', { class: 'num' }, num(c.count)),
        el('td', null, cell(c.section))]),
      cs.length + ' CPUs, no per-CPU area in use');
  }

  function chartData(kernel: string): { keys: Point[]; data: (number | null)[][] } {
    const keys = [...st.series.values()].filter((s) => s.kernel === kernel);
    const xs = st.t.map((t) => t / 1000);
    const data: (number | null)[][] = [xs, ...keys.map((s) => s.values.slice())];
    // Carry each line on to now: a count that stopped moving is still that count.
    const now = Date.now() / 1000;
    if (xs.length > 0 && now > xs[xs.length - 1]!) {
      xs.push(now);
      for (let i = 1; i < data.length; i++) data[i]!.push(data[i]![data[i]!.length - 1] ?? null);
    }
    return { keys, data };
  }

  function drawChart(box: any, kernel: string): void {
    const { keys, data } = chartData(kernel);
    const sig = keys.map((k) => String(k.fd)).join(',');
    box.setAttribute('data-samples', String(st.t.length));
    const total = keys.find((k) => k.fd === null);
    box.setAttribute('data-total', total === undefined ? '' : String(total.values[total.values.length - 1] ?? ''));
    const width = Math.max(300, box.clientWidth || 600);
    let c = charts.get(kernel);
    if (st.t.length === 0) {
      if (c !== undefined) c.plot.destroy();
      charts.delete(kernel);
      box.replaceChildren(el('p', { class: 'empty' }, st.sampleMs === 0 ? 'history is off (KCOV_UI_SAMPLE_MS=0)' : 'no samples yet'));
      return;
    }
    if (c !== undefined && c.keys === sig) {
      c.plot.setData(data);
      if (Math.abs(c.plot.width - width) > 2) c.plot.setSize({ width, height: 220 });
      return;
    }
    if (c !== undefined) c.plot.destroy();
    box.replaceChildren();
    const stepped = uPlot.paths.stepped({ align: 1 });
    const plot = new uPlot({
      width,
      height: 220,
      scales: { x: { time: true }, y: { range: (_u: any, _min: number, max: number) => [0, Math.max(1, max * 1.05)] } },
      axes: [{}, { size: 70, label: 'count' }],
      series: [{}, ...keys.map((k, i) => ({
        label: k.fd === null ? kernel + ' (all descriptors)' : 'fd ' + k.fd,
        stroke: COLORS[i % COLORS.length],
        width: k.fd === null ? 2.5 : 1.5,
        paths: stepped,
        points: { show: false },
        value: (_u: any, v: number | null) => (v === null ? '—' : v.toLocaleString('en-US')),
      }))],
    }, data, box);
    charts.set(kernel, { plot, keys: sig });
  }

  function render(): void {
    const m = st.memory;
    byId('memory').replaceChildren(m === null ? '' : el('span', null,
      'memory ', el('span', { class: 'bar' }, el('span', { class: 'in', 'data-pct': ((100 * m.used) / m.limit).toFixed(1) })),
      ' ' + bytes(m.used) + ' of ' + bytes(m.limit)));
    byId('boot').textContent = st.boot === null ? '' : 'boot ' + st.boot.slice(0, 8);
    byId('untracked').textContent = st.untracked > 0 ? st.untracked + ' series not charted: KCOV_MEMORY_LIMIT is full' : '';

    const main = byId('kernels');
    const seen = new Set<string>();
    for (const k of st.kernels) {
      seen.add(k.name);
      let sec = main.querySelector('section[data-kernel="' + k.name + '"]');
      if (sec === null) {
        sec = el('section', { class: 'kernel', 'data-kernel': k.name },
          el('h2', null), el('div', { class: 'chart' }), el('div', { class: 'tables' }));
        main.append(sec);
      }
      main.append(sec); // keeps the engine's order
      const d = st.details.get(k.name)!;
      sec.querySelector('h2').replaceChildren(k.name, ' ', el('small', null,
        k.dialect + ' · ' + plural(k.ncpus, 'CPU') + ' · ' + plural(k.descriptors, 'descriptor') + ' · ' +
        plural(k.threads, 'thread') + ' · ' + plural(k.remotes, 'remote') + ' · ' + bytes(k.memory)));
      sec.querySelector('.tables').replaceChildren(
        el('h3', null, 'descriptors'), descriptorsTable(d.descriptors),
        el('div', { class: 'pair' },
          el('div', null, el('h3', null, 'remotes'), remotesTable(d.remotes)),
          el('div', null, el('h3', null, 'CPU areas'), cpusTable(d.cpus))));
      drawChart(sec.querySelector('.chart'), k.name);
    }
    for (const sec of [...main.querySelectorAll('section.kernel')]) {
      const name = sec.getAttribute('data-kernel');
      if (seen.has(name)) continue;
      charts.get(name)?.plot.destroy();
      charts.delete(name);
      sec.remove();
    }
    // Bars are sized here, not by inline style attributes (the CSP allows none).
    for (const b of document.querySelectorAll('.bar .in')) b.style.width = Math.min(100, Number(b.getAttribute('data-pct'))) + '%';
  }

  function askToken(why: string): Promise<void> {
    const form = byId('auth');
    const input = byId('token');
    byId('auth-why').textContent = st.token === '' ? 'This server needs its KCOV_TOKEN.' : 'The token was refused: ' + why;
    form.hidden = false;
    setStatus('auth', 'token needed');
    input.focus();
    return new Promise((resolve) => {
      form.onsubmit = (ev: any) => {
        ev.preventDefault();
        st.token = String(input.value).trim();
        sessionStorage.setItem(TOKEN_KEY, st.token);
        input.value = '';
        form.hidden = true;
        setStatus('connecting', 'connecting…');
        resolve();
      };
    });
  }

  async function run(): Promise<void> {
    byId('forget').onclick = () => {
      sessionStorage.removeItem(TOKEN_KEY);
      st.token = '';
    };
    window.addEventListener('resize', () => {
      for (const [kernel, c] of charts) {
        const box = document.querySelector('section[data-kernel="' + kernel + '"] .chart');
        if (box !== null) c.plot.setSize({ width: Math.max(300, box.clientWidth), height: 220 });
      }
    });
    let first = true;
    for (;;) {
      try {
        const boot = st.boot;
        const h = await api('/v1/history?after=' + st.seq + '&wait=' + (first ? 0 : WAIT_MS));
        if (boot !== null && st.boot !== boot) continue; // restarted: start over from seq 0
        merge(h);
        await refresh();
        render();
        first = false;
        setStatus('live', 'live · ' + new Date().toLocaleTimeString('en-GB'));
      } catch (e: any) {
        if (e.status === 401) {
          await askToken(e.message);
          continue;
        }
        setStatus('error', 'error: ' + e.message + ' (retrying)');
        await sleep(RETRY_MS);
      }
    }
  }

  void run();
}

export const APP_JS = `'use strict';\n(${dashboard.toString()})();\n`;

export const INDEX_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kcovd dashboard</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/uplot.css">
<link rel="stylesheet" href="/ui/style.css">
<script src="/ui/uplot.js" defer></script>
<script src="/ui/app.js" defer></script>
</head>
<body>
<header>
  <h1>kcovd</h1>
  <span id="memory"></span>
  <span id="untracked" class="warn"></span>
  <span class="grow"></span>
  <span id="boot" class="muted"></span>
  <span id="status" class="status connecting">connecting…</span>
  <button id="forget" type="button" title="forget the bearer token kept in this tab">forget token</button>
</header>
<form id="auth" hidden>
  <p id="auth-why"></p>
  <label>Bearer token <input id="token" type="password" autocomplete="off" spellcheck="false"></label>
  <button type="submit">connect</button>
  <p class="muted">Kept in this tab only (sessionStorage) and sent as <code>Authorization: Bearer</code> to the API.</p>
</form>
<main id="kernels"></main>
<footer class="muted">Counts are the count word of each area as stored; the chart samples them every KCOV_UI_SAMPLE_MS
(<a href="/docs">API docs</a>, <a href="/v1/history">history JSON</a>).</footer>
</body>
</html>
`;

export const STYLE_CSS = `:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #fff; --accent: #1f4e9c; --warn: #c92a2a; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: center; padding: 10px 20px; background: #101828; color: #f2f4f7; }
header h1 { font-size: 18px; margin: 0; letter-spacing: .5px; }
header .muted { color: #98a2b3; }
header button { background: none; border: 1px solid #475467; color: #d0d5dd; border-radius: 4px; padding: 2px 8px; cursor: pointer; }
.grow { flex: 1; }
.muted { color: var(--muted); }
.warn { color: #ffa8a8; font-weight: 600; }
.status { padding: 2px 10px; border-radius: 10px; font-size: 12px; }
.status.live { background: #2b8a3e; color: #fff; }
.status.connecting { background: #475467; color: #fff; }
.status.auth { background: #e67700; color: #fff; }
.status.error { background: var(--warn); color: #fff; }
#auth { margin: 20px; padding: 16px 20px; background: var(--card); border: 1px solid var(--line); border-left: 4px solid #e67700; border-radius: 6px; max-width: 640px; }
#auth input { font: inherit; padding: 4px 8px; width: 320px; margin: 0 8px; }
main { padding: 16px 20px; display: grid; gap: 16px; }
section.kernel { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px 16px; }
section.kernel h2 { margin: 0 0 8px; font-size: 17px; }
section.kernel h2 small { font-weight: normal; color: var(--muted); font-size: 13px; margin-left: 8px; }
h3 { font-size: 13px; text-transform: uppercase; letter-spacing: .6px; color: var(--muted); margin: 14px 0 6px; }
.chart { min-height: 60px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 10px 4px 0; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { font-weight: 600; color: var(--muted); font-size: 12px; }
td.num, th.num { text-align: right; }
tr.closed td { color: var(--muted); }
td.state { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
.bar { display: inline-block; width: 90px; height: 8px; background: var(--line); border-radius: 4px; overflow: hidden; vertical-align: middle; }
.bar .in { display: block; height: 100%; width: 0; background: var(--accent); }
td.full .bar .in { background: var(--warn); }
td.full { color: var(--warn); font-weight: 600; }
header .bar { background: #344054; }
.empty { color: var(--muted); margin: 4px 0; }
footer { padding: 0 20px 20px; font-size: 12px; }
footer a { color: var(--accent); }
`;
