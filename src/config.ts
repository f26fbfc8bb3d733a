/** Settings from the environment (and flags), validated once at start-up. */
import { availableParallelism } from 'node:os';
import type { DialectName } from './engine/errno.js';

export interface Config {
  port: number;
  host: string;
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
    dialect: dialect as DialectName,
    ncpus: e.KCOV_NCPUS === undefined ? Math.min(availableParallelism(), 64) : int(e.KCOV_NCPUS, 'KCOV_NCPUS', 1, 1024),
    memoryLimit: e.KCOV_MEMORY_LIMIT === undefined ? 1024 ** 3 : parseSize(e.KCOV_MEMORY_LIMIT, 'KCOV_MEMORY_LIMIT'),
    token: e.KCOV_TOKEN === undefined || e.KCOV_TOKEN === '' ? undefined : e.KCOV_TOKEN,
    bodyLimit: e.KCOV_BODY_LIMIT === undefined ? 64 * 1024 ** 2 : parseSize(e.KCOV_BODY_LIMIT, 'KCOV_BODY_LIMIT'),
    cpuAreaWords: e.KCOV_CPU_AREA_WORDS === undefined ? undefined : int(e.KCOV_CPU_AREA_WORDS, 'KCOV_CPU_AREA_WORDS', 2, 1 << 26),
    barrierTimeoutMs: e.KCOV_BARRIER_TIMEOUT_MS === undefined ? 1000 : int(e.KCOV_BARRIER_TIMEOUT_MS, 'KCOV_BARRIER_TIMEOUT_MS', 0, 600_000),
    logLevel: e.LOG_LEVEL ?? 'info',
  };
}
