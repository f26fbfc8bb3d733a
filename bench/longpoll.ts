/**
 * Write throughput with 5000 idle long-poll waiters on the kernel vs none.
 * Two kcovd servers, each in its own process: on one, 5000 requests wait on
 * GET coverage?wait= of a descriptor nobody writes to (re-armed when they time
 * out); both take the same binary PC batches into another descriptor. Rounds
 * alternate the two servers; the row is the median of per-round ratios
 * (with waiters / without). Per-resource wake-up keeps it near 1.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Pool, request } from 'undici';
import { run, type Load } from './driver.js';
import { cpuOf, type BenchModule, type MicroRow } from './cases.js';
import { COST } from '../src/engine/kernel/costs.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const K = '/v1/kernels/default';
const WAITERS = Number(process.env.BENCH_WAITERS ?? 5000);

interface Server { origin: string; child: ChildProcess }

async function spawn(): Promise<Server> {
  // BENCH_PROF=dir: each server writes a CPU profile there when the run ends.
  const prof = process.env.BENCH_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : [];
  const child = fork(`${HERE}servers.js`, ['kcovd'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: prof });
  const origin = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { endpoint: { origin: string } }) => resolve(m.endpoint.origin));
    child.once('exit', (code) => reject(new Error(`kcovd server exited (${code})`)));
  });
  return { origin, child };
}

async function call(origin: string, method: 'POST', path: string, body: unknown): Promise<any> {
  const res = await request(origin + path, { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return JSON.parse(text);
}

async function tracedFd(origin: string, tid: number, words: number): Promise<number> {
  const { fd } = await call(origin, 'POST', `${K}/descriptors`, { tid });
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: words });
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' });
  return fd;
}

/** `n` long-polls on `fd`, each re-sent when it answers, until stop(). */
function idleWaiters(origin: string, fd: number, n: number): { ready: Promise<void>; stop: () => Promise<void> } {
  const pool = new Pool(origin, { connections: n, pipelining: 1, headersTimeout: 0, bodyTimeout: 0 });
  let stopped = false;
  const loops: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    loops.push((async () => {
      while (!stopped) {
        try {
          const res = await pool.request({ method: 'GET', path: `${K}/descriptors/${fd}/coverage?wait=30000`, headers: { accept: 'application/octet-stream' } });
          await res.body.dump();
        } catch {
          if (!stopped) await new Promise((r) => setTimeout(r, 50));
        }
      }
    })());
  }
  // Ready once the server has parked every poll (its memory account shows the waiters).
  const ready = (async () => {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await request(`${origin}/v1/kernels`);
      const by = (JSON.parse(await res.body.text()) as { memory: { by?: { waiters?: number } } }).memory.by;
      // Without a breakdown (an older server), wait a fixed time instead.
      if (by?.waiters === undefined) return new Promise<void>((r) => setTimeout(r, Math.max(2000, n)));
      if (by.waiters >= n * COST.waiter) return;
      if (Date.now() > deadline) throw new Error(`only ${by.waiters / COST.waiter} of ${n} long-polls parked`);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    ready,
    stop: async () => {
      stopped = true;
      await pool.destroy();
      await Promise.allSettled(loops);
    },
  };
}

function pcBody(records: number): Buffer {
  const b = Buffer.alloc(records * 8);
  for (let i = 0; i < records; i++) {
    b.writeUInt32LE((0x81000000 + i * 4) >>> 0, i * 8);
    b.writeUInt32LE(0xffffffff, i * 8 + 4);
  }
  return b;
}


const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export async function longPollBench(rounds: number, durationMs: number): Promise<MicroRow> {
  const [quiet, busy] = await Promise.all([spawn(), spawn()]);
  try {
    const loads: Load[] = [];
    for (const s of [quiet, busy]) {
      const fds = [await tracedFd(s.origin, 1, 1024 * 1024), await tracedFd(s.origin, 2, 1024 * 1024)];
      const body = pcBody(200);
      loads.push({
        connections: 2,
        pipelining: 4,
        durationMs,
        job: (c, n) => n % 5000 === 4999
          ? { method: 'PUT', path: `${K}/descriptors/${fds[c]}/coverage/count`, headers: { 'content-type': 'application/json' }, body: '{"count":0}', extra: true }
          : { method: 'POST', path: `${K}/threads/${c + 1}/events?kind=pc`, headers: { 'content-type': 'application/octet-stream' }, body },
      });
    }
    const idleFd = await tracedFd(busy.origin, 3, 64);
    const waiters = idleWaiters(busy.origin, idleFd, WAITERS);
    await waiters.ready;
    const ratios: number[] = [];
    const cpuRatios: number[] = [];
    const q: number[] = [];
    const b: number[] = [];
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      const rps = [0, 0];
      const cpu = [0, 0];
      for (const i of order) {
        const l = round === 0 ? { ...loads[i]!, durationMs: Math.min(400, durationMs) } : loads[i]!;
        const s = i === 0 ? quiet : busy;
        const c0 = await cpuOf(s);
        const t0 = performance.now();
        rps[i] = (await run({ origin: s.origin }, l)).rps;
        cpu[i] = (await cpuOf(s) - c0) / Math.max(1, rps[i]! * (performance.now() - t0) / 1000);
      }
      if (round === 0) continue;
      q.push(rps[0]!);
      b.push(rps[1]!);
      ratios.push(rps[1]! / rps[0]!);
      cpuRatios.push(cpu[0]! / cpu[1]!);
    }
    await waiters.stop();
    const r = median(ratios);
    process.stderr.write(`long-poll bench: server CPU per write, no waiters / ${WAITERS} waiters: median ${median(cpuRatios).toFixed(2)}× (${cpuRatios.map((x) => x.toFixed(2)).join(' ')})\n`);
    return {
      name: `binary batch of 200 PCs with ${WAITERS} idle long-poll waiters (CPU/req ratio ${median(cpuRatios).toFixed(2)}×)`,
      value: `${median(b).toFixed(0)} req/s`,
      baseline: 'the same with no waiters',
      baselineValue: `${median(q).toFixed(0)} req/s`,
      ratio: r,
      min: Math.min(...ratios),
      max: Math.max(...ratios),
      target: `≥ 0.9 ${r >= 0.9 ? '✓' : '✗'}`,
    };
  } finally {
    await Promise.all([quiet, busy].map((s) => new Promise((resolve) => {
      s.child.once('exit', resolve);
      s.child.disconnect();
    })));
  }
}

// `node dist/bench/longpoll.js`: this case alone.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const row = await longPollBench(Number(process.env.BENCH_ROUNDS ?? 5), Number(process.env.BENCH_MS ?? 1000));
  process.stdout.write(`| ${row.name} | ${row.value} | ${row.baseline} | ${row.baselineValue} | **${row.ratio.toFixed(2)}×** | ${row.min.toFixed(2)}–${row.max.toFixed(2)} | ${row.target} |\n`);
}

/** The module npm run bench registers: two servers of its own, so it runs as an in-process row. */
export const longpoll: BenchModule = {
  name: 'longpoll',
  async micro(rounds) {
    const only = process.env.BENCH_ONLY;
    if (only !== undefined && !'long-poll waiters'.includes(only)) return [];
    return [await longPollBench(rounds, Number(process.env.BENCH_MS ?? 1000))];
  },
};
