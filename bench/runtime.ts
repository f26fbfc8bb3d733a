/**
 * The C runtime on a real program: the SQLite workload (examples/c/sqlite_workload.c
 * on the amalgamation, built by scripts/cbuild.ts and cached in ~/.cache/kcovd)
 * linked with libkcovd_rt.a against the same objects linked with the local
 * reference recorder (examples/c/refrec.c). Wall time of whole runs, medians of
 * rounds in which each runtime run (over TCP, over the Unix socket; their order
 * alternates) follows a reference run and is compared with it, then the same
 * runs back to back (information); kcovd is its own process, and every run
 * stores all its PCs (a dedicated kernel, an area that holds the run, closed
 * after it). `node dist/bench/runtime.js` runs it alone.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sqliteBuild } from '../scripts/cbuild.js';
import type { BenchModule, MicroRow } from './cases.js';

const SERVER_JS = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'server.js');
const SCALE = process.env.BENCH_SQLITE_SCALE ?? '3';

interface Done { ms: number; stderr: string }

function timed(bin: string, args: string[], env: Record<string, string>): Promise<Done> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const c = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve({ ms: performance.now() - t0, stderr }) : reject(new Error(`${bin} exited ${code}: ${stderr}`))));
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** CPU ms (user + system) a process has used so far, from /proc (Linux); NaN elsewhere. */
function cpuMs(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
  } catch {
    return NaN;
  }
}

async function startKcovd(sock: string): Promise<{ url: string; pid: number | undefined; stop: () => void }> {
  const child = spawn(process.execPath, [SERVER_JS], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', KCOV_SOCKET: sock, LOG_LEVEL: 'info', KCOV_MEMORY_LIMIT: '2G' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let log = '';
    let tcp: string | undefined;
    const on = (d: Buffer) => {
      log += d.toString();
      tcp ??= /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log)?.[1];
      if (tcp !== undefined && log.includes('listening on the Unix socket')) {
        child.stdout!.off('data', on);
        child.stdout!.resume();
        resolve(tcp);
      }
    };
    child.stdout!.on('data', on);
    child.once('exit', (code) => reject(new Error(`kcovd exited (${code})`)));
  });
  return { url, pid: child.pid, stop: () => child.kill('SIGKILL') };
}

const storedOf = (stderr: string): number => Number(/(\d+) stored,/.exec(stderr)?.[1] ?? NaN);

export async function runtimeBench(rounds: number): Promise<MicroRow[]> {
  const b = sqliteBuild();
  const dir = mkdtempSync(join(tmpdir(), 'kcovd-bench-rt-'));
  const sock = join(dir, 'kcovd.sock');
  const srv = await startKcovd(sock);
  try {
    // 6.4 Mi PCs a scale unit: the area holds the whole run, and is closed after it.
    const words = String(Math.min(2 ** 28 - 1, 8 * 1024 * 1024 * Number(SCALE)));
    const serverCpu: number[] = [];
    const rt = (url: string) => ({ KCOVD_URL: url, KCOVD_ENABLE: 'pc', KCOVD_WORDS: words, KCOVD_CLOSE: '1', KCOVD_VERBOSE: '1' });
    const runs = {
      ref: () => timed(b.ref, [SCALE], {}),
      tcp: async () => {
        const c0 = cpuMs(srv.pid);
        const d = await timed(b.rt, [SCALE], rt(srv.url));
        serverCpu.push(cpuMs(srv.pid) - c0);
        return d;
      },
      unix: () => timed(b.rt, [SCALE], rt(`unix:${sock}`)),
      plain: () => timed(b.plain, [SCALE], {}),
    };
    const ms: Record<string, number[]> = { ref: [], tcp: [], unix: [], plain: [] };
    const ratioTcp: number[] = [];
    const ratioUnix: number[] = [];
    const tcpOverUnix: number[] = [];
    let stored = 0;
    const waited: number[] = [];
    // Each kcovd run follows a reference run, which leaves kcovd the time to fold the previous
    // run's trace (runs back to back are the row after these), and is compared with it.
    const orders: ('tcp' | 'unix')[][] = [['tcp', 'unix'], ['unix', 'tcp']];
    for (let round = 0; round <= rounds; round++) {
      const got: Partial<Record<keyof typeof runs, Done>> = {};
      const refs: Partial<Record<'tcp' | 'unix', Done>> = {};
      for (const k of orders[round % orders.length]!) {
        refs[k] = await runs.ref();
        got[k] = await runs[k]();
      }
      if (round === 0) continue; // warm-up: page cache, the server's JIT
      got.plain = await runs.plain();
      for (const k of Object.keys(got) as (keyof typeof runs)[]) ms[k].push(got[k]!.ms);
      ms.ref.push(refs.tcp!.ms, refs.unix!.ms);
      ratioTcp.push(got.tcp!.ms / refs.tcp!.ms);
      ratioUnix.push(got.unix!.ms / refs.unix!.ms);
      tcpOverUnix.push(got.tcp!.ms / got.unix!.ms);
      stored = storedOf(got.tcp!.stderr);
      waited.push(Number(/(\d+) ms waiting for a free buffer/.exec(got.tcp!.stderr)?.[1] ?? NaN));
      const lost = /(\d+) dropped by full areas, \d+ ignored by the service, (\d+) dropped by the runtime/.exec(got.tcp!.stderr);
      if (lost === null || lost[1] !== '0' || lost[2] !== '0') throw new Error(`the runtime lost records in the bench: ${got.tcp!.stderr}`);
    }
    // The same over TCP, runs back to back: each one follows another kcovd run at once, so it
    // shares the CPU with the previous run's fold (the alternating rounds leave kcovd idle
    // while the reference runs).
    const cpuAlternating = median(serverCpu);
    const backToBack: number[] = [];
    for (let i = 0; i < Math.max(3, rounds); i++) backToBack.push((await runs.tcp()).ms);
    const ratioBack = backToBack.slice(1).map((m) => m / median(ms.ref));
    const row = (name: string, value: string, baseline: string, baselineValue: string, r: number[], target: string): MicroRow => ({
      name, value, baseline, baselineValue, ratio: median(r), min: Math.min(...r), max: Math.max(...r), target,
    });
    const f = (x: number) => `${x.toFixed(0)} ms`;
    const pcsPerSec = (stored / (median(ms.tcp) / 1000) / 1e6).toFixed(1);
    const pcsPerSecU = (stored / (median(ms.unix) / 1000) / 1e6).toFixed(1);
    return [
      row(`C runtime, SQLite x${SCALE} (${(stored / 1e6).toFixed(1)}M PCs), TCP: wall time`, `${f(median(ms.tcp))}, ${pcsPerSec}M PCs/s stored, kcovd CPU ${f(cpuAlternating)}, program waited ${f(median(waited))}`, 'local reference recorder', `${f(median(ms.ref))} (uninstrumented ${f(median(ms.plain))})`, ratioTcp, '≤ 1.5 (slowdown)'),
      row(`C runtime, SQLite x${SCALE}, Unix socket: wall time`, `${f(median(ms.unix))}, ${pcsPerSecU}M PCs/s stored`, 'local reference recorder', f(median(ms.ref)), ratioUnix, '≤ 1.5 (slowdown)'),
      row('C runtime, TCP against the Unix socket', f(median(ms.tcp)), 'the same over the Unix socket', f(median(ms.unix)), tcpOverUnix, 'information'),
      row(`C runtime, SQLite x${SCALE}, TCP, runs back to back`, f(median(backToBack.slice(1))), 'local reference recorder', f(median(ms.ref)), ratioBack, 'information'),
    ];
  } finally {
    srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await runtimeBench(Number(process.env.BENCH_ROUNDS ?? 5));
  process.stdout.write('| case | value | baseline | baseline value | ratio (median) | min–max | target |\n|---|---:|---|---:|---:|---:|---:|\n');
  for (const m of rows) process.stdout.write(`| ${m.name} | ${m.value} | ${m.baseline} | ${m.baselineValue} | **${m.ratio.toFixed(2)}×** | ${m.min.toFixed(2)}–${m.max.toFixed(2)} | ${m.target} |\n`);
}

/** The module npm run bench registers: its own kcovd servers and C builds, so it runs as in-process rows. */
export const runtime: BenchModule = {
  name: 'runtime',
  async micro(rounds) {
    const only = process.env.BENCH_ONLY;
    if (only !== undefined && !'C runtime'.includes(only)) return [];
    return runtimeBench(rounds);
  },
};
