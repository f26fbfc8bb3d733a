/**
 * npm run bench: kcovd against its floors, in one run, same driver, medians
 * of per-round ratios. Every server is a child process (the driver keeps its
 * own core); rounds alternate baseline and kcovd so drift on a shared machine
 * hits both sides of a ratio alike. Numbers are throughput ratios, not
 * assertions: nothing here fails a build.
 *
 * Cases live in modules (bench/cases.ts says what one gives); add yours to
 * MODULES with one import and one entry.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { context, cpuOf, median, type BenchModule, type HttpCase, type MicroRow } from './cases.js';
import { core } from './core.js';
import { fleet } from './fleet.js';
import { longpoll } from './longpoll.js';
import { runtime } from './runtime.js';
import { reject } from './reject.js';
import { run, type Load, type Target } from './driver.js';
import type { Endpoint } from './servers.js';

const MODULES: BenchModule[] = [
  core,
  reject,
  longpoll,
  fleet,
  runtime,
];

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const DURATION_MS = Number(process.env.BENCH_MS ?? 1000);
const ONLY = process.env.BENCH_ONLY; // substring filter on case names ('a|b': either)

interface Server { endpoint: Endpoint; child: ChildProcess }


/** Requests a second, and server CPU µs a request. */
async function measure(s: Server, via: 'tcp' | 'unix' | undefined, load: Load): Promise<{ rps: number; cpu: number }> {
  const target: Target = via === 'unix'
    ? { origin: 'http://localhost', socketPath: s.endpoint.socketPath ?? fail('the server has no Unix socket') }
    : { origin: s.endpoint.origin };
  const c0 = await cpuOf(s);
  const t0 = performance.now();
  const r = await run(target, load);
  const c1 = await cpuOf(s);
  const n = r.rps * (performance.now() - t0) / 1000;
  return { rps: r.rps, cpu: (c1 - c0) / Math.max(1, n) };
}

function fail(msg: string): never {
  throw new Error(msg);
}

async function spawnServer(kind: string): Promise<Server> {
  // BENCH_PROF=dir: every server writes a CPU profile there (node --cpu-prof) when the run ends.
  const prof = process.env.BENCH_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  // stdout (kcovd's log lines) goes to /dev/null: logging costs its formatting and write, not a terminal.
  const child = fork(`${HERE}servers.js`, [kind], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: prof });
  const endpoint = await new Promise<Endpoint>((resolve, reject) => {
    child.once('message', (m: { endpoint: Endpoint }) => resolve(m.endpoint));
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code})`)));
  });
  return { endpoint, child };
}

/** The target column: "≥ t ✓/✗", or "floor"/"information" for a case with no target (target 0). */
const mark = (c: HttpCase, ratio: number): string => (c.target === 0 ? (c.info === true ? 'information' : 'floor') : `≥ ${c.target} ${ratio >= c.target ? '✓' : '✗'}`);

async function main(): Promise<void> {
  const t0 = performance.now();
  const servers = new Map<string, Server>();
  const server = async (kind: string): Promise<Server> => {
    let s = servers.get(kind);
    if (s === undefined) servers.set(kind, (s = await spawnServer(kind)));
    return s;
  };
  const kcovd = await server('kcovd');
  const ctx = context({ origin: kcovd.endpoint.origin }, DURATION_MS, ROUNDS);

  // ---- set-up: every module's cases, over HTTP as a client would ----
  const cases: HttpCase[] = [];
  for (const m of MODULES) {
    if (m.http === undefined) continue;
    for (const c of await m.http(ctx)) if (ONLY === undefined || ONLY.split('|').some((o) => c.name.includes(o))) cases.push(c);
  }
  for (const c of cases) {
    await server(c.baseline.server);
    if (c.subject !== undefined) {
      const s = await server(c.subject.server);
      await c.subject.setup?.(context({ origin: s.endpoint.origin }, DURATION_MS, ROUNDS));
    }
  }

  // ---- rounds: round 0 warms up and is not counted ----
  const ratios = new Map<string, number[]>();
  const kRps = new Map<string, number[]>();
  const bRps = new Map<string, number[]>();
  const cpuRatios = new Map<string, number[]>();
  const kCpu = new Map<string, number[]>();
  const bCpu = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => (m.get(k) ?? m.set(k, []).get(k)!).push(v);
  for (let round = 0; round <= ROUNDS; round++) {
    for (const c of cases) {
      const warm = round === 0;
      const scale = (l: Load): Load => (warm ? { ...l, durationMs: Math.min(400, l.durationMs) } : l);
      // Alternate which side goes first so a trend in machine load does not favour one side.
      const order = round % 2 === 0 ? ['b', 'k'] : ['k', 'b'];
      let rb = 0, rk = 0, cb = 0, ck = 0;
      for (const side of order) {
        if (side === 'b') ({ rps: rb, cpu: cb } = await measure(servers.get(c.baseline.server)!, c.baseline.via, scale(c.baseline.load)));
        else ({ rps: rk, cpu: ck } = await measure(c.subject === undefined ? kcovd : servers.get(c.subject.server)!, c.via, scale(c.kcovd)));
      }
      if (warm) continue;
      push(cpuRatios, c.name, cb / ck);
      push(kCpu, c.name, ck);
      push(bCpu, c.name, cb);
      push(ratios, c.name, rk / rb);
      push(kRps, c.name, rk);
      push(bRps, c.name, rb);
    }
    if (round > 0 && cases.length > 0) process.stderr.write(`round ${round}/${ROUNDS} done\n`);
  }

  const rows: string[] = [];
  const cpuRows: string[] = [];
  const notes: string[] = [];
  rows.push('| case | kcovd | baseline | baseline value | ratio (median) | min–max | target |');
  rows.push('|---|---:|---|---:|---:|---:|---:|');
  for (const c of cases) {
    const r = ratios.get(c.name)!;
    const kib = /(\d+) KiB/.exec(c.name);
    const mbps = kib !== null ? ` (${(median(kRps.get(c.name)!) * Number(kib[1]) / 1024).toFixed(0)} MiB/s)` : '';
    const who = c.subject === undefined ? '' : `${c.subject.name}: `;
    rows.push(`| ${c.name} | ${who}${median(kRps.get(c.name)!).toFixed(0)} req/s${mbps} | ${c.baseline.name} | ${median(bRps.get(c.name)!).toFixed(0)} req/s | **${median(r).toFixed(2)}×** | ${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)} | ${mark(c, median(r))} |`);
    const cr = cpuRatios.get(c.name)!;
    cpuRows.push(`| ${c.name} | ${who}${median(kCpu.get(c.name)!).toFixed(1)} µs | ${c.baseline.name} | ${median(bCpu.get(c.name)!).toFixed(1)} µs | **${median(cr).toFixed(2)}×** | ${Math.min(...cr).toFixed(2)}–${Math.max(...cr).toFixed(2)} | ${mark(c, median(cr))} |`);
  }

  await Promise.all([...servers.values()].map((s) => new Promise((resolve) => {
    s.child.once('exit', resolve);
    s.child.disconnect();
  })));

  const micro: MicroRow[] = [];
  for (const m of MODULES) if (m.micro !== undefined) micro.push(...(await m.micro(ROUNDS)));
  for (const m of micro) {
    rows.push(m.raw ?? `| ${m.name} | ${m.value} | ${m.baseline} | ${m.baselineValue} | **${m.ratio.toFixed(2)}×** | ${m.min.toFixed(2)}–${m.max.toFixed(2)} | ${m.target} |`);
    if (m.note !== undefined) notes.push(m.note);
  }

  const secs = ((performance.now() - t0) / 1000).toFixed(0);
  const logging = `kcovd logging: LOG_LEVEL=${process.env.LOG_LEVEL ?? '(default)'}, KCOV_LOG_REQUESTS=${process.env.KCOV_LOG_REQUESTS ?? '(default)'}`;
  process.stdout.write(`\nkcovd bench — node ${process.version}, ${ROUNDS} rounds × ${DURATION_MS} ms, medians of per-round ratios (${secs} s); ${logging}\n\n`);
  process.stdout.write(rows.join('\n') + '\n');
  if (cpuRows.length > 0) {
    process.stdout.write('\nServer CPU per request (user + system of the server process; ratio = baseline / kcovd, so higher is better):\n\n');
    process.stdout.write('| case | kcovd CPU/req | baseline | baseline CPU/req | ratio (median) | min–max | target |\n|---|---:|---|---:|---:|---:|---:|\n');
    process.stdout.write(cpuRows.join('\n') + '\n');
  }
  for (const n of notes) process.stdout.write(`\n${n}\n`);
}

await main();
