/** Settings from the environment (and flags), validated once at start-up. */
import { availableParallelism } from 'node:os';
import type { DialectName } from './engine/errno.js';

export interface Config {
  port: number;
  host: string;
  /** Unix domain socket path to listen on as well (KCOV_SOCKET / --socket); undefined: TCP only. */
  socket: string | undefined;
  dialect: DialectName;
  ncpus: number;
  /** Bytes all coverage areas together may take. */
  memoryLimit: number;
  /** Bearer token; every route but /healthz and /readyz needs it when set. */
  token: string | undefined;
  /** Largest request body in bytes. */
  bodyLimit: number;
  /** Words of each per-CPU remote area. */
  cpuAreaWords: number | undefined;
  /** Milliseconds a request waits for open remote sections (OpenBSD kr_barrier) before ETIMEDOUT. */
  barrierTimeoutMs: number;
  logLevel: string;
  /** Kernels the engine may hold at once (KCOV_MAX_KERNELS); past it, ENOMEM. */
  maxKernels: number;
  /** Open descriptors per kernel (KCOV_MAX_DESCRIPTORS); past it, ENOMEM. */
  maxDescriptors: number;
  /** Threads per kernel (KCOV_MAX_THREADS); past it, ENOMEM. */
  maxThreads: number;
  /** Remotes registered per kernel (KCOV_MAX_REMOTES); past it, ENOMEM. */
  maxRemotes: number;
  /** Distinct PCs given a KCOV_UNIQUE_ENABLE guard per kernel (KCOV_MAX_GUARDS). */
  maxGuards: number;
  /** Milliseconds to receive a whole request (KCOV_REQUEST_TIMEOUT; 0 = none). */
  requestTimeout: number;
  /** Milliseconds a socket may stay silent (KCOV_CONNECTION_TIMEOUT; 0 = none). */
  connectionTimeout: number;
  /** Milliseconds an idle keep-alive socket is kept (KCOV_KEEPALIVE_TIMEOUT). */
  keepAliveTimeout: number;
  /** Longest long-poll wait in milliseconds (KCOV_MAX_WAIT); larger ?wait= is capped. */
  maxWait: number;
  /** Milliseconds shutdown may take before the process gives up and exits 1 (KCOV_SHUTDOWN_TIMEOUT). */
  shutdownTimeout: number;
  /** Dashboard history: samples held (KCOV_UI_HISTORY, even) and sampling period in ms (KCOV_UI_SAMPLE_MS; 0 = off). */
  uiHistory: number;
  uiSampleMs: number;
}

const SIZE_RE = /^(\d+)\s*([kKmMgGtT]?)(i?[bB])?$/;
const UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "1073741824", "512M", "1GiB": bytes. */
export function parseSize(v: string, name: string): number {
  const m = SIZE_RE.exec(v.trim());
  if (m === null) throw new Error(`${name}: "${v}" is not a size (bytes, or a number with K, M, G or T)`);
  const n = Number(m[1]) * UNITS[m[2]!.toLowerCase()]!;
  if (!Number.isSafeInteger(n)) throw new Error(`${name}: "${v}" is too large`);
  return n;
}

function int(v: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(v.trim())) throw new Error(`${name}: "${v}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw new Error(`${name}: ${n} is outside ${min}..${max}`);
  return n;
}

const DIALECTS = ['linux', 'openbsd', 'netbsd', 'freebsd'];

/** `--port 8080` style flags override the environment's `PORT=8080`. */
function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"`);
    const eq = a.indexOf('=');
    const key = (eq >= 0 ? a.slice(2, eq) : a.slice(2)).toUpperCase().replace(/-/g, '_');
    const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
    if (value === undefined) throw new Error(`flag ${a} needs a value`);
    const env = ['PORT', 'HOST', 'LOG_LEVEL'].includes(key) ? key : key.startsWith('KCOV_') ? key : `KCOV_${key}`;
    out[env] = value;
  }
  return out;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = []): Config {
  const e = { ...env, ...flagsToEnv(argv) };
  const dialect = (e.KCOV_DIALECT ?? 'linux').toLowerCase();
  if (!DIALECTS.includes(dialect)) throw new Error(`KCOV_DIALECT: "${dialect}" is not one of ${DIALECTS.join(', ')}`);
  return {
    port: e.PORT === undefined ? 5268 : int(e.PORT, 'PORT', 0, 65535),
    host: e.HOST ?? '127.0.0.1',
    socket: e.KCOV_SOCKET === undefined || e.KCOV_SOCKET === '' ? undefined : e.KCOV_SOCKET,
    dialect: dialect as DialectName,
    ncpus: e.KCOV_NCPUS === undefined ? Math.min(availableParallelism(), 64) : int(e.KCOV_NCPUS, 'KCOV_NCPUS', 1, 1024),
    memoryLimit: e.KCOV_MEMORY_LIMIT === undefined ? 1024 ** 3 : parseSize(e.KCOV_MEMORY_LIMIT, 'KCOV_MEMORY_LIMIT'),
    token: e.KCOV_TOKEN === undefined || e.KCOV_TOKEN === '' ? undefined : e.KCOV_TOKEN,
    bodyLimit: e.KCOV_BODY_LIMIT === undefined ? 64 * 1024 ** 2 : parseSize(e.KCOV_BODY_LIMIT, 'KCOV_BODY_LIMIT'),
    cpuAreaWords: e.KCOV_CPU_AREA_WORDS === undefined ? undefined : int(e.KCOV_CPU_AREA_WORDS, 'KCOV_CPU_AREA_WORDS', 2, 1 << 26),
    barrierTimeoutMs: e.KCOV_BARRIER_TIMEOUT_MS === undefined ? 1000 : int(e.KCOV_BARRIER_TIMEOUT_MS, 'KCOV_BARRIER_TIMEOUT_MS', 0, 600_000),
    logLevel: e.LOG_LEVEL ?? 'info',
    ...limits(e),
  };
}

function limits(e: Record<string, string | undefined>) {
  const opt = (name: string, dflt: number, min: number, max: number) => (e[name] === undefined ? dflt : int(e[name]!, name, min, max));
  const out = {
    maxKernels: opt('KCOV_MAX_KERNELS', 64, 1, 1 << 20),
    maxDescriptors: opt('KCOV_MAX_DESCRIPTORS', 1024, 1, 1 << 24),
    maxThreads: opt('KCOV_MAX_THREADS', 4096, 1, 1 << 24),
    maxRemotes: opt('KCOV_MAX_REMOTES', 4096, 1, 1 << 24),
    maxGuards: opt('KCOV_MAX_GUARDS', 1 << 20, 0, 1 << 26),
    requestTimeout: opt('KCOV_REQUEST_TIMEOUT', 30_000, 0, 2 ** 31 - 1),
    connectionTimeout: opt('KCOV_CONNECTION_TIMEOUT', 0, 0, 2 ** 31 - 1),
    keepAliveTimeout: opt('KCOV_KEEPALIVE_TIMEOUT', 72_000, 1, 2 ** 31 - 1),
    maxWait: opt('KCOV_MAX_WAIT', 30_000, 0, 3_600_000),
    shutdownTimeout: opt('KCOV_SHUTDOWN_TIMEOUT', 10_000, 1, 2 ** 31 - 1),
    uiHistory: opt('KCOV_UI_HISTORY', 512, 4, 1 << 16),
    uiSampleMs: opt('KCOV_UI_SAMPLE_MS', 1000, 0, 3_600_000),
  };
  if (out.uiHistory % 2 !== 0) throw new Error(`KCOV_UI_HISTORY: ${out.uiHistory} must be even (the history halves when full)`);
  // A socket timeout shorter than a long-poll would cut the poll off mid-wait.
  if (out.connectionTimeout !== 0 && out.connectionTimeout <= out.maxWait) {
    throw new Error(`KCOV_CONNECTION_TIMEOUT (${out.connectionTimeout} ms) must be 0 or longer than KCOV_MAX_WAIT (${out.maxWait} ms)`);
  }
  return out;
}
