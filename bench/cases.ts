/**
 * What a bench module gives `npm run bench`. A module is one file of cases
 * (bench/core.ts, bench/longpoll.ts, …) registered with one line in the
 * MODULES list of bench/run.ts:
 *
 *   export const longpoll: BenchModule = {
 *     name: 'longpoll',
 *     async http(ctx) { const fd = await ctx.tracedFd(400, 64); return [{ name, target, kcovd: load, baseline }]; },
 *     micro(rounds) { return [row]; },               // in-process rows, optional
 *   };
 *
 * HTTP cases run in the shared rounds (alternating baseline and kcovd, medians
 * of per-round ratios, server CPU per request beside them). `BENCH_ONLY` keeps
 * the cases whose name contains it.
 */
import { fork } from 'node:child_process';
import { request } from 'undici';
import type { Job, Load, Target } from './driver.js';

export interface HttpCase {
  name: string;
  /** Ratio kcovd / baseline the issue asks for; 0: none (the column says `floor`, or `information` when `info`). */
  target: number;
  /** A row that shows what bounds another (not a target): "information" in the target column. */
  info?: boolean;
  kcovd: Load;
  /** 'unix': drive kcovd over its KCOV_SOCKET listener instead of TCP. */
  via?: 'tcp' | 'unix';
  /**
   * Another server in kcovd's place (a floor measured against a floor, or kcovd configured
   * otherwise); a kind of bench/servers.ts. `setup` runs once that server is up (it may be
   * called once for each case that names the server).
   */
  subject?: { server: string; name: string; setup?(ctx: BenchContext): Promise<void> };
  baseline: {
    /** A kind of bench/servers.ts ('raw-sink', 'raw-static', 'fastify', or 'file.js#export'). */
    server: string;
    via?: 'tcp' | 'unix';
    name: string;
    load: Load;
  };
}

export interface MicroRow {
  name: string;
  value: string;
  baseline: string;
  baselineValue: string;
  /** Throughput ratio, kcovd over baseline (> 1: kcovd faster). */
  ratio: number;
  min: number;
  max: number;
  target: string;
  /** A row already formatted (its own columns), printed as it is instead. */
  raw?: string;
  /** A line printed under the tables. */
  note?: string;
}

/** What an HTTP module's set-up gets: the kcovd under test, reached as a client would. */
export interface BenchContext {
  kcovd: Target;
  durationMs: number;
  rounds: number;
  /** One request to kcovd; JSON bodies are encoded, Buffers sent as octet-stream; the JSON reply. */
  call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, headers?: Record<string, string>): Promise<any>;
  /** A descriptor of `words` words enabled in PC mode for thread `tid` of the default kernel. */
  tracedFd(tid: number, words: number): Promise<number>;
}

export interface BenchModule {
  name: string;
  /** Set up on kcovd and return the HTTP cases (run in the shared rounds). */
  http?(ctx: BenchContext): Promise<HttpCase[]>;
  /** In-process rows (after the HTTP rounds; servers are stopped by then). */
  micro?(rounds: number): MicroRow[] | Promise<MicroRow[]>;
}

export const K = '/v1/kernels/default';

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `records` PC records, little-endian, distinct per seed. */
export function pcBody(records: number, seed: number): Buffer {
  const b = Buffer.alloc(records * 8);
  for (let i = 0; i < records; i++) {
    b.writeUInt32LE((0x81000000 + seed * 0x10000 + i * 4) >>> 0, i * 8);
    b.writeUInt32LE(0xffffffff, i * 8 + 4);
  }
  return b;
}

export function context(kcovd: Target, durationMs: number, rounds: number): BenchContext {
  const call: BenchContext['call'] = async (method, path, body, headers = {}) => {
    const isBuf = Buffer.isBuffer(body);
    const res = await request(kcovd.origin + path, {
      method,
      headers: body === undefined ? headers : { 'content-type': isBuf ? 'application/octet-stream' : 'application/json', ...headers },
      body: body === undefined ? undefined : isBuf ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
    return text === '' ? null : JSON.parse(text);
  };
  return {
    kcovd, durationMs, rounds, call,
    async tracedFd(tid, words) {
      const { fd } = await call('POST', `${K}/descriptors`, { tid });
      await call('POST', `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: words });
      await call('POST', `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' });
      return fd;
    },
  };
}

export type { Job, Load, Target };

/** Run `file` in a child process of its own and resolve with the one message it sends back. */
export function childResult<T>(file: string, args: string[] = [], execArgv: string[] = []): Promise<T> {
  const child = fork(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
  return new Promise<T>((resolve, reject) => {
    child.once('message', (m: T) => resolve(m));
    child.once('exit', (code) => reject(new Error(`${file} ${args.join(' ')} exited (${code})`)));
  });
}

/** CPU microseconds a bench server process (bench/servers.ts, forked with IPC) has used so far. */
export function cpuOf(s: { child: import('node:child_process').ChildProcess }): Promise<number> {
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
