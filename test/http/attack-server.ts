/**
 * The real server (dist/src/server.js) as a child process, for the attack
 * suite: its port, its RSS from /proc/<pid>/status (sampled, with the peak),
 * raw-socket requests, and a /healthz timer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';

const SERVER = fileURLToPath(new URL('../../src/server.js', import.meta.url));
export const MEMORY_LIMIT = 256 * 1024 * 1024;
/** What the suite allows the process on top of KCOV_MEMORY_LIMIT (node itself, sockets, parsing). */
export const RSS_ALLOWANCE = 128 * 1024 * 1024;

/**
 * How long /healthz may take during an attack: 1 s, scaled up on a machine
 * whose load average is over 2 per core (shared CI runners), where a request
 * waits for a core whatever the server does.
 */
export function healthzBound(): number {
  const perCore = loadavg()[0]! / availableParallelism();
  return Math.round(1000 * Math.max(1, perCore / 2));
}

export interface Server {
  port: number;
  child: ChildProcess;
  /** Current RSS in bytes. */
  rss(): number;
  /** Largest RSS seen by the sampler since start (or the last resetPeak). */
  peak(): number;
  resetPeak(): void;
  /** Everything the server wrote to stdout (pino JSON lines). */
  log(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  // Under tap, @tapjs/processinfo puts an --import of its coverage hooks into NODE_OPTIONS of every
  // child process spawned, whatever env it is given: in the server they took 45 MiB of RSS that users
  // never have. env(1) drops NODE_OPTIONS before node starts, so the suite measures the server as it runs.
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, SERVER], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', KCOV_MEMORY_LIMIT: '256M', KCOV_NCPUS: '2', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start: ${out} ${err}`));
    }, 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"msg":"Server listening at http:\/\/127\.0\.0\.1:(\d+)"/.exec(out);
      if (m !== null) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    void exited.then(({ code }) => reject(new Error(`server exited ${code}: ${err}`)));
  });
  let peak = 0;
  const sampler = setInterval(() => { peak = Math.max(peak, rssOf(child.pid!)); }, 20);
  sampler.unref();
  void exited.then(() => clearInterval(sampler));
  return {
    port,
    child,
    rss: () => rssOf(child.pid!),
    peak: () => Math.max(peak, rssOf(child.pid!)),
    resetPeak: () => { peak = 0; },
    log: () => out,
    exited,
    stop: async () => {
      clearInterval(sampler);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export interface RawReply {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Milliseconds from the first byte sent to the reply (or the close). */
  ms: number;
  closed: boolean;
}

/** Parse the first HTTP response in `text` (content-length bodies, which is all the server writes for problems). */
export function parseReply(text: string): Omit<RawReply, 'ms' | 'closed'> | null {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const lines = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  const len = Number(headers['content-length'] ?? NaN);
  const body = text.slice(end + 4);
  // `text` is latin1: one character a byte.
  if (Number.isFinite(len) && body.length < len) return null;
  return { status, headers, body: Buffer.from(Number.isFinite(len) ? body.slice(0, len) : body, 'latin1').toString('utf8') };
}

/**
 * Open a socket, write `parts` (a function may write over time), and resolve
 * with the first reply, or when the server closes, or after `timeoutMs`.
 */
export function raw(port: number, parts: string | Buffer | ((s: net.Socket) => void), timeoutMs = 5000): Promise<RawReply> {
  return new Promise((resolve) => {
    const started = Date.now();
    const s = net.connect(port, '127.0.0.1');
    let text = '';
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const r = parseReply(text);
      s.destroy();
      resolve({ status: r?.status ?? 0, headers: r?.headers ?? {}, body: r?.body ?? text, ms: Date.now() - started, closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (parseReply(text) !== null) finish(false);
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
    s.on('connect', () => {
      if (typeof parts === 'function') parts(s);
      else s.write(parts);
    });
  });
}

/** One chunk of a `Transfer-Encoding: chunked` body, framed. */
export function chunkFrame(chunk: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from('\r\n')]);
}

/** Milliseconds /healthz takes to answer 200 on a fresh connection (Infinity if it fails). */
export async function healthzMs(port: number, timeoutMs = 5000): Promise<number> {
  const r = await raw(port, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', timeoutMs);
  return r.status === 200 ? r.ms : Infinity;
}

/** An HTTP/1.1 request as text. */
export function http(method: string, path: string, headers: Record<string, string | number> = {}, body = ''): string {
  let h = `${method} ${path} HTTP/1.1\r\nHost: kcovd\r\n`;
  for (const [k, v] of Object.entries(headers)) h += `${k}: ${v}\r\n`;
  if (body !== '' && headers['content-length'] === undefined && headers['transfer-encoding'] === undefined) h += `content-length: ${Buffer.byteLength(body)}\r\n`;
  return `${h}\r\n${body}`;
}
