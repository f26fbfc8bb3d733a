/**
 * npm run bench: kcovd against its floors, in one run, same driver, medians
 * of per-round ratios. Every server is a child process (the driver keeps its
 * own core); rounds alternate baseline and kcovd so drift on a shared machine
 * hits both sides of a ratio alike. Numbers are throughput ratios, not
 * assertions: nothing here fails a build.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { run, type Job, type Load } from './driver.js';
import { engineBench, snapshotCodecBench, type MicroRow } from './micro.js';
import { runtimeBench } from './runtime.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const DURATION_MS = Number(process.env.BENCH_MS ?? 1000);
const ONLY = process.env.BENCH_ONLY; // substring filter on case names

interface Server { origin: string; child: ChildProcess }

/** CPU microseconds the server process has used so far. */
function cpuOf(s: Server): Promise<number> {
  return new Promise((resolve) => {
    const on = (m: { cpu?: number }) => {
      if (typeof m.cpu !== 'number') return;
      s.child.off('message', on);
      resolve(m.cpu);
    };
    s.child.on('message', on);
    s.child.send('cpu');
  });
}

/** Requests a second, and server CPU µs a request. */
async function measure(s: Server, load: Load): Promise<{ rps: number; cpu: number }> {
  const c0 = await cpuOf(s);
  const t0 = performance.now();
  const r = await run(s.origin, load);
  const c1 = await cpuOf(s);
  const n = r.rps * (performance.now() - t0) / 1000;
  return { rps: r.rps, cpu: (c1 - c0) / Math.max(1, n) };
}

async function spawnServer(kind: string): Promise<Server> {
  // BENCH_PROF=dir: every server writes a CPU profile there (node --cpu-prof) when the run ends.
  const prof = process.env.BENCH_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const child = fork(`${HERE}servers.js`, [kind], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: prof });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code})`)));
  });
  return { origin: `http://127.0.0.1:${port}`, child };
}

async function call(origin: string, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, headers: Record<string, string> = {}): Promise<any> {
  const isBuf = Buffer.isBuffer(body);
  const res = await request(origin + path, {
    method,
    headers: body === undefined ? headers : { 'content-type': isBuf ? 'application/octet-stream' : 'application/json', ...headers },
    body: body === undefined ? undefined : isBuf ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return text === '' ? null : JSON.parse(text);
}

const K = '/v1/kernels/default';

/** A descriptor of `words` words enabled in PC mode for thread `tid`. */
async function tracedFd(origin: string, tid: number, words: number): Promise<number> {
  const { fd } = await call(origin, 'POST', `${K}/descriptors`, { tid });
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: words });
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' });
  return fd;
}

function pcBody(records: number, seed: number): Buffer {
  const b = Buffer.alloc(records * 8);
  for (let i = 0; i < records; i++) {
    b.writeUInt32LE((0x81000000 + seed * 0x10000 + i * 4) >>> 0, i * 8);
    b.writeUInt32LE(0xffffffff, i * 8 + 4);
  }
  return b;
}

interface Case {
  name: string;
  target: number;
  kcovd: Load;
  baseline: { server: 'raw-sink' | 'raw-static' | 'fastify'; load: Load; name: string };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function main(): Promise<void> {
  const t0 = performance.now();
  const kinds = ['kcovd', 'raw-sink', 'raw-static', 'fastify'] as const;
  const servers = Object.fromEntries(await Promise.all(kinds.map(async (k) => [k, await spawnServer(k)] as const))) as Record<(typeof kinds)[number], Server>;
  const kc = servers.kcovd.origin;

  // ---- set-up on kcovd (over HTTP, as a client would) ----
  const INGEST_CONNS = 4;
  const AREA_WORDS = 4 * 1024 * 1024; // 32 MiB a connection
  const ingestFds: number[] = [];
  for (let c = 0; c < INGEST_CONNS; c++) ingestFds.push(await tracedFd(kc, 100 + c, AREA_WORDS));
  const SMALL_CONNS = 4;
  const SMALL_PIPE = 4;
  const smallFds: number[] = [];
  for (let c = 0; c < SMALL_CONNS; c++) smallFds.push(await tracedFd(kc, 200 + c, 1024 * 1024));
  const jsonFd = await tracedFd(kc, 300, 64);
  await call(kc, 'POST', `${K}/threads/300/events?kind=pc`, pcBody(32, 3));
  const SNAP_WORDS = 512 * 1024;
  const snapFd = await tracedFd(kc, 301, SNAP_WORDS);
  await call(kc, 'POST', `${K}/threads/301/events?kind=pc`, pcBody(SNAP_WORDS - 1, 4));

  const octet = { 'content-type': 'application/octet-stream' };
  const jsonH = { 'content-type': 'application/json' };
  const countReset = (fd: number): Job & { extra: boolean } =>
    ({ method: 'PUT', path: `${K}/descriptors/${fd}/coverage/count`, headers: jsonH, body: '{"count":0}', extra: true });

  const ingest = (bytes: number): Case => {
    const body = pcBody(bytes / 8, 1);
    const perArea = Math.floor((AREA_WORDS - 1) / (bytes / 8));
    const load = (job: Load['job']): Load => ({ connections: INGEST_CONNS, pipelining: 1, durationMs: DURATION_MS, job });
    return {
      name: `binary PC ingest ${bytes / 1024} KiB`,
      target: 0.9,
      // Every connection has its own area; its count goes back to 0 before the area fills, so nothing is dropped.
      kcovd: load((c, n) => n % (perArea + 1) === perArea
        ? countReset(ingestFds[c]!)
        : { method: 'POST', path: `${K}/threads/${100 + c}/events?kind=pc`, headers: octet, body }),
      baseline: { server: 'raw-sink', name: 'node:http copy sink', load: load(() => ({ method: 'POST', path: '/events', headers: octet, body })) },
    };
  };
  const small = (name: string, job: Load['job']): Case => {
    const load = (j: Load['job']): Load => ({ connections: SMALL_CONNS, pipelining: SMALL_PIPE, durationMs: DURATION_MS, job: j });
    return {
      name,
      target: 0.75,
      kcovd: load(job),
      baseline: { server: 'fastify', name: 'Fastify hello world', load: load(() => ({ method: 'GET', path: '/' })) },
    };
  };
  const batch = pcBody(200, 2);
  const all: Case[] = [
    ingest(64 * 1024),
    ingest(512 * 1024),
    small('ioctl KCOV_RESET_TRACE', (c) => ({
      method: 'POST', path: `${K}/descriptors/${smallFds[c]}/ioctl/KCOV_RESET_TRACE`, headers: jsonH, body: `{"tid":${200 + c},"arg":0}`,
    })),
    small('PUT coverage/count', (c) => ({ ...countReset(smallFds[c]!), extra: false })),
    small('binary batch of 200 PCs', (c, n) => n % 5000 === 4999
      ? countReset(smallFds[c]!)
      : { method: 'POST', path: `${K}/threads/${200 + c}/events?kind=pc`, headers: octet, body: batch }),
    small('JSON snapshot of 32 PCs', () => ({ method: 'GET', path: `${K}/descriptors/${jsonFd}/coverage`, headers: { accept: 'application/json' } })),
    {
      name: 'binary snapshot 512Ki words',
      target: 0.9,
      kcovd: { connections: 2, pipelining: 1, durationMs: DURATION_MS, job: () => ({ method: 'GET', path: `${K}/descriptors/${snapFd}/coverage`, headers: { accept: 'application/octet-stream' } }) },
      baseline: { server: 'raw-static', name: 'node:http static Buffer', load: { connections: 2, pipelining: 1, durationMs: DURATION_MS, job: () => ({ method: 'GET', path: `/?size=${SNAP_WORDS * 8}` }) } },
    },
  ];
  const cases = all.filter((c) => ONLY === undefined || c.name.includes(ONLY));

  // ---- rounds: round 0 warms up and is not counted ----
  const ratios = new Map<string, number[]>();
  const kRps = new Map<string, number[]>();
  const bRps = new Map<string, number[]>();
  const cpuRatios = new Map<string, number[]>();
  const kCpu = new Map<string, number[]>();
  const bCpu = new Map<string, number[]>();
  for (let round = 0; round <= ROUNDS; round++) {
    for (const c of cases) {
      const warm = round === 0;
      const scale = (l: Load): Load => (warm ? { ...l, durationMs: Math.min(400, l.durationMs) } : l);
      // Alternate which side goes first so a trend in machine load does not favour one side.
      const order = round % 2 === 0 ? ['b', 'k'] : ['k', 'b'];
      let rb = 0, rk = 0, cb = 0, ck = 0;
      for (const side of order) {
        if (side === 'b') ({ rps: rb, cpu: cb } = await measure(servers[c.baseline.server], scale(c.baseline.load)));
        else ({ rps: rk, cpu: ck } = await measure(servers.kcovd, scale(c.kcovd)));
      }
      if (warm) continue;
      (cpuRatios.get(c.name) ?? cpuRatios.set(c.name, []).get(c.name)!).push(cb / ck);
      (kCpu.get(c.name) ?? kCpu.set(c.name, []).get(c.name)!).push(ck);
      (bCpu.get(c.name) ?? bCpu.set(c.name, []).get(c.name)!).push(cb);
      (ratios.get(c.name) ?? ratios.set(c.name, []).get(c.name)!).push(rk / rb);
      (kRps.get(c.name) ?? kRps.set(c.name, []).get(c.name)!).push(rk);
      (bRps.get(c.name) ?? bRps.set(c.name, []).get(c.name)!).push(rb);
    }
    if (round > 0) process.stderr.write(`round ${round}/${ROUNDS} done\n`);
  }

  const rows: string[] = [];
  const cpuRows: string[] = [];
  rows.push('| case | kcovd | baseline | baseline value | ratio (median) | min–max | target |');
  rows.push('|---|---:|---|---:|---:|---:|---:|');
  for (const c of cases) {
    const r = ratios.get(c.name)!;
    const mbps = c.name.includes('KiB') ? ` (${(median(kRps.get(c.name)!) * Number(c.name.match(/(\d+) KiB/)![1]) / 1024).toFixed(0)} MiB/s)` : '';
    rows.push(`| ${c.name} | ${median(kRps.get(c.name)!).toFixed(0)} req/s${mbps} | ${c.baseline.name} | ${median(bRps.get(c.name)!).toFixed(0)} req/s | **${median(r).toFixed(2)}×** | ${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)} | ≥ ${c.target} ${median(r) >= c.target ? '✓' : '✗'} |`);
    const cr = cpuRatios.get(c.name)!;
    cpuRows.push(`| ${c.name} | ${median(kCpu.get(c.name)!).toFixed(1)} µs | ${c.baseline.name} | ${median(bCpu.get(c.name)!).toFixed(1)} µs | **${median(cr).toFixed(2)}×** | ${Math.min(...cr).toFixed(2)}–${Math.max(...cr).toFixed(2)} | ≥ ${c.target} ${median(cr) >= c.target ? '✓' : '✗'} |`);
  }

  await Promise.all(Object.values(servers).map((s) => new Promise((resolve) => {
    s.child.once('exit', resolve);
    s.child.disconnect();
  })));

  const micro: MicroRow[] = [];
  if (ONLY === undefined || 'engine'.includes(ONLY)) micro.push(...engineBench(ROUNDS));
  if (ONLY === undefined || 'snapshot codecs'.includes(ONLY)) micro.push(...snapshotCodecBench(ROUNDS));
  if (ONLY === undefined || 'C runtime'.includes(ONLY)) micro.push(...(await runtimeBench(ROUNDS)));
  for (const m of micro) {
    rows.push(`| ${m.name} | ${m.value} | ${m.baseline} | ${m.baselineValue} | **${m.ratio.toFixed(2)}×** | ${m.min.toFixed(2)}–${m.max.toFixed(2)} | ${m.target} |`);
  }

  let memLine = '';
  if (ONLY === undefined || 'memory'.includes(ONLY)) {
    const child = fork(`${HERE}memory.js`, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--expose-gc'] });
    const m = await new Promise<{ line: string; row: string }>((resolve, reject) => {
      child.once('message', (x: { line: string; row: string }) => resolve(x));
      child.once('exit', (code) => reject(new Error(`memory bench exited (${code})`)));
    });
    rows.push(m.row);
    memLine = m.line;
  }

  const secs = ((performance.now() - t0) / 1000).toFixed(0);
  process.stdout.write(`\nkcovd bench — node ${process.version}, ${ROUNDS} rounds × ${DURATION_MS} ms, medians of per-round ratios (${secs} s)\n\n`);
  process.stdout.write(rows.join('\n') + '\n');
  if (cpuRows.length > 0) {
    process.stdout.write('\nServer CPU per request (user + system of the server process; ratio = baseline / kcovd, so higher is better):\n\n');
    process.stdout.write('| case | kcovd CPU/req | baseline | baseline CPU/req | ratio (median) | min–max | target |\n|---|---:|---|---:|---:|---:|---:|\n');
    process.stdout.write(cpuRows.join('\n') + '\n');
  }
  if (memLine !== '') process.stdout.write(`\n${memLine}\n`);
}

await main();
