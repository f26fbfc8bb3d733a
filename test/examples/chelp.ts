/** Shared by the C runtime tests: running programs, a kcovd in its own process, plain HTTP over TCP or a Unix socket. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { has } from '../../scripts/cbuild.js';

export const SERVER_JS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'server.js');

/** gcc, make and (for trace-pc-guard) clang: CI installs them, so there a missing tool fails the test. */
export function needTool(tool: string): false | string {
  if (has(tool)) return false;
  if (process.env.CI === 'true') throw new Error(`${tool} is not installed and CI=true: .ci/run installs it`);
  return `${tool} not installed`;
}

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run a program to its end (killed after timeoutMs); never blocks the event loop, so an in-process server keeps answering. */
export function run(bin: string, args: string[], env: Record<string, string>, timeoutMs = 60_000): Promise<Ran> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** "stats who k=v ..." lines the stress program prints (kcovd_stats()). */
export function stats(stdout: string, who = 'main'): Record<string, number> {
  const line = stdout.split('\n').find((l) => l.startsWith(`stats ${who} `));
  if (line === undefined) throw new Error(`no stats line for ${who} in:\n${stdout}`);
  const out: Record<string, number> = {};
  for (const kv of line.split(' ').slice(2)) {
    const [k, v] = kv.split('=');
    out[k] = Number(v);
  }
  return out;
}

/** The runtime's summary line on stderr, as numbers. */
export function summary(stderr: string): Record<string, number> | null {
  const m = /kcovd_rt: pid \d+: (\d+) records seen, (\d+) sent, (\d+) stored, (\d+) dropped by full areas, (\d+) ignored by the service, (\d+) dropped by the runtime, (\d+) lost in nested hooks, (\d+) unconfirmed, (\d+) not sent.*?; (\d+) requests, (\d+) errors, (\d+) restarts/.exec(stderr);
  if (m === null) return null;
  const k = ['seen', 'sent', 'stored', 'area_dropped', 'ignored', 'runtime_dropped', 'nested_lost', 'unconfirmed', 'pending', 'requests', 'errors', 'restarts'];
  return Object.fromEntries(k.map((n, i) => [n, Number(m[i + 1])]));
}

export interface Target {
  url?: string;
  socketPath?: string;
}

export interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export function http(target: Target, method: string, path: string, body?: unknown, accept = 'application/json'): Promise<Res> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const u = target.url !== undefined ? new URL(target.url) : undefined;
    const req = request(
      {
        method,
        path,
        ...(u !== undefined ? { hostname: u.hostname.replace(/^\[|\]$/g, ''), port: u.port } : { socketPath: target.socketPath }),
        headers: { accept, ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export async function jsonOf(target: Target, method: string, path: string, body?: unknown): Promise<any> {
  const r = await http(target, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.body.toString()}`);
  return r.status === 204 ? null : JSON.parse(r.body.toString());
}

/** The area of a descriptor as userspace would mmap it: word 0 the count, then the records. */
export async function area(target: Target, kernel: string, fd: number): Promise<BigUint64Array> {
  const r = await http(target, 'GET', `/v1/kernels/${kernel}/descriptors/${fd}/coverage`, undefined, 'application/octet-stream');
  if (r.status !== 200) throw new Error(`coverage of fd ${fd}: ${r.status} ${r.body.toString()}`);
  const b = new Uint8Array(r.body.length);
  b.set(r.body);
  return new BigUint64Array(b.buffer, 0, b.length / 8);
}

/** PCs of an area (or a reference recorder file), shifted by `delta`. */
export function pcsOf(words: BigUint64Array, delta = 0n): bigint[] {
  const n = Number(words[0]);
  const out = new Array<bigint>(n);
  for (let i = 0; i < n; i++) out[i] = words[i + 1] + delta;
  return out;
}

export function readWords(file: string): BigUint64Array {
  const b = readFileSync(file);
  const u = new Uint8Array(b.length);
  u.set(b);
  return new BigUint64Array(u.buffer, 0, u.length / 8);
}

/** First index where two sequences differ, or -1. */
export function firstDiff(a: ArrayLike<bigint>, b: ArrayLike<bigint>): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

export interface Spawned {
  socketPath: string;
  proc: ChildProcess;
  target: Target;
  stop(): Promise<void>;
}

/** kcovd in its own process on a Unix socket (a process the test can SIGSTOP or kill). */
export async function spawnServer(t: { teardown(fn: () => unknown): void }, env: Record<string, string> = {}, socketPath?: string): Promise<Spawned> {
  let dir: string | undefined;
  if (socketPath === undefined) {
    dir = mkdtempSync(join(tmpdir(), 'kcovd-srv-'));
    socketPath = join(dir, 'kcovd.sock');
  }
  const sock = socketPath;
  const proc = spawn(process.execPath, [SERVER_JS], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', KCOV_SOCKET: sock, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Ready when this process says it listens on the socket (an older server may still answer on the path).
  let listening = false;
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => {
    if (listening) return;
    log += d.toString();
    if (log.includes('listening on the Unix socket')) listening = true;
  });
  let exited = false;
  proc.on('exit', () => (exited = true));
  const stop = async () => {
    if (!exited) {
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      await new Promise((r) => proc.once('exit', r));
    }
  };
  t.teardown(async () => {
    await stop();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });
  const until = Date.now() + 20_000;
  for (;;) {
    if (listening && existsSync(sock)) {
      try {
        const r = await http({ socketPath: sock }, 'GET', '/healthz');
        if (r.status === 200) break;
      } catch {
        /* not yet */
      }
    }
    if (exited || Date.now() > until) throw new Error('kcovd did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return { socketPath: sock, proc, target: { socketPath: sock }, stop };
}
