/**
 * Settings from the environment (and flags), validated once at start-up.
 * SETTINGS is the one table of them: it drives parsing, what the engine is
 * given (engineOptions), `kcovd serve --help` and the configuration table in
 * docs/configuration.md (a test fails when that page drifts from it).
 */
import { availableParallelism } from 'node:os';
import type { EngineOptions } from './engine/engine.js';
import { DIALECT_NAMES, isDialectName, type DialectName } from './wire/names.js';

/** How a setting's text becomes a value. */
type Kind =
  | { readonly type: 'int'; readonly min: number; readonly max: number }
  | { readonly type: 'size' }
  | { readonly type: 'string' }
  | { readonly type: 'bool' }
  | { readonly type: 'enum'; readonly values: readonly string[] }
  | { readonly type: 'dialect' };

interface SettingRow {
  /** Environment variable; `--kebab-case` of it (without KCOV_) is the flag. */
  readonly env: string;
  /** Field of Config. */
  readonly key: string;
  readonly kind: Kind;
  /** Value when unset: a value, undefined (the setting is then off), or computed at start-up. */
  readonly default: number | string | boolean | undefined | (() => number);
  /** The default as the docs write it. */
  readonly shown: string;
  /** What it does (markdown, one table cell). */
  readonly doc: string;
  /** A per-kernel cap the engine enforces (KernelCaps), or an option of the engine itself. */
  readonly engine?: 'kernel' | 'engine';
}

const MS = 2 ** 31 - 1;

export const SETTINGS = [
  { env: 'PORT', key: 'port', kind: { type: 'int', min: 0, max: 65535 }, default: 5268, shown: '`5268`', doc: 'TCP port' },
  { env: 'HOST', key: 'host', kind: { type: 'string' }, default: '127.0.0.1', shown: '`127.0.0.1`', doc: 'address to bind (loopback unless you mean otherwise)' },
  {
    env: 'KCOV_SOCKET', key: 'socket', kind: { type: 'string' }, default: undefined, shown: 'unset',
    doc: 'also listen on this Unix domain socket path (`--socket`); a stale socket file there is replaced, any other file is an error; removed at exit',
  },
  {
    env: 'KCOV_DIALECT', key: 'dialect', kind: { type: 'dialect' }, default: 'linux', shown: '`linux`', engine: 'engine',
    doc: `dialect of the \`default\` kernel: ${DIALECT_NAMES.map((d) => `\`${d}\``).join(', ')}`,
  },
  {
    env: 'KCOV_NCPUS', key: 'ncpus', kind: { type: 'int', min: 1, max: 1024 }, default: () => Math.min(availableParallelism(), 64),
    shown: 'available cores (≤ 64)', doc: 'CPUs of a kernel created without `ncpus`', engine: 'engine',
  },
  {
    env: 'KCOV_MEMORY_LIMIT', key: 'memoryLimit', kind: { type: 'size' }, default: 1024 ** 3, shown: '`1G`', engine: 'engine',
    doc: 'bytes that all coverage areas may take together (`512M`, `1GiB`, ...). Past it: **507 ENOMEM**',
  },
  {
    env: 'KCOV_COVER_LIMIT', key: 'coverLimit', kind: { type: 'size' }, default: undefined, shown: '⅛ of `KCOV_MEMORY_LIMIT`', engine: 'engine',
    doc: 'bytes the cover unions of all kernels may take together (part of `KCOV_MEMORY_LIMIT`, so that new PCs never crowd out areas and bodies). Past it a union stops growing: PCs and signals it cannot hold are counted as `lost` in `/cover` and the metrics',
  },
  {
    env: 'KCOV_AREA_POOL', key: 'areaPool', kind: { type: 'size' }, default: undefined, shown: '¼ of `KCOV_MEMORY_LIMIT`, at most `256M`', engine: 'engine',
    doc: 'bytes of freed areas (of 1 MiB or more) kept for reuse by an area of the same size, zeroed as a fresh one: a fresh area\'s pages fault in on first write, which costs more than storing the records. Charged to `KCOV_MEMORY_LIMIT` as `pool` and given back whenever a charge needs the room; `0` keeps none',
  },
  {
    env: 'KCOV_TOKEN', key: 'token', kind: { type: 'string' }, default: undefined, shown: 'unset',
    doc: 'bearer token every route but `/healthz` and `/readyz` requires (401 otherwise); see [Operations](operations.md#authentication)',
  },
  {
    env: 'KCOV_DOCS_PUBLIC', key: 'docsPublic', kind: { type: 'bool' }, default: false, shown: '`false`',
    doc: '`true`: `/docs` and `/openapi.json` answer without the token while the API stays protected; see [OpenAPI](openapi.md#docs-with-authentication)',
  },
  {
    env: 'KCOV_BODY_LIMIT', key: 'bodyLimit', kind: { type: 'size' }, default: 64 * 1024 ** 2, shown: '`64M`',
    doc: 'largest request body (of an encoded body, its decoded size). Past it: **413** problem+json (errno E2BIG), and nothing is stored',
  },
  {
    env: 'KCOV_JSON_LIMIT', key: 'jsonLimit', kind: { type: 'size' }, default: 4 * 1024 ** 2, shown: '`4M`',
    doc: 'largest `application/json` body (at most `KCOV_BODY_LIMIT`; parsed JSON costs ~20× its size, so large batches go as `application/octet-stream`). Past it: **413 E2BIG**',
  },
  {
    env: 'KCOV_INFLIGHT_LIMIT', key: 'inflightLimit', kind: { type: 'size' }, default: 128 * 1024 ** 2, shown: '`128M`',
    doc: 'bytes of request bodies all requests together may hold while they arrive (also charged to `KCOV_MEMORY_LIMIT`; JSON at 24×). Past it: **503 EBUSY** with `Retry-After`; see [limits](limits.md)',
  },
  {
    env: 'KCOV_COMPRESS', key: 'compress', kind: { type: 'enum', values: ['off', 'text', 'all'] }, default: 'text', shown: '`text`',
    doc: 'reply compression as `Accept-Encoding` allows: `off`, `text` (JSON, problem+json and text) or `all` (binary too); see [OpenAPI](openapi.md#compression)',
  },
  {
    env: 'KCOV_COMPRESS_THRESHOLD', key: 'compressThreshold', kind: { type: 'size' }, default: 1024, shown: '`1024`',
    doc: 'smallest reply body that is compressed, in bytes',
  },
  {
    env: 'KCOV_CPU_AREA_WORDS', key: 'cpuAreaWords', kind: { type: 'int', min: 2, max: 1 << 26 }, default: undefined, shown: "dialect's own",
    doc: 'words of each per-CPU remote area', engine: 'engine',
  },
  {
    env: 'KCOV_BARRIER_TIMEOUT_MS', key: 'barrierTimeoutMs', kind: { type: 'int', min: 0, max: 600_000 }, default: 1000, shown: '`1000`',
    doc: 'OpenBSD: how long KIODISABLE, close and remote unregister wait for open sections (`kr_barrier`) before ETIMEDOUT (409)',
  },
  {
    env: 'KCOV_MAX_KERNELS', key: 'maxKernels', kind: { type: 'int', min: 1, max: 1 << 20 }, default: 64, shown: '`64`', engine: 'engine',
    doc: 'kernels that may exist at once, `default` included. Past it: **507 ENOMEM**',
  },
  {
    env: 'KCOV_MAX_DESCRIPTORS', key: 'maxDescriptors', kind: { type: 'int', min: 1, max: 1 << 24 }, default: 1024, shown: '`1024`', engine: 'kernel',
    doc: 'open descriptors per kernel (like `RLIMIT_NOFILE`). Closing one frees a slot. Past it: **507 ENOMEM**',
  },
  {
    env: 'KCOV_MAX_THREADS', key: 'maxThreads', kind: { type: 'int', min: 1, max: 1 << 24 }, default: 4096, shown: '`4096`', engine: 'kernel',
    doc: 'threads per kernel, counting those a request creates by naming a new `tid`. Past it: **507 ENOMEM**',
  },
  {
    env: 'KCOV_MAX_REMOTES', key: 'maxRemotes', kind: { type: 'int', min: 1, max: 1 << 24 }, default: 4096, shown: '`4096`', engine: 'kernel',
    doc: 'remotes registered per kernel. Past it: **507 ENOMEM**',
  },
  {
    env: 'KCOV_MAX_GUARDS', key: 'maxGuards', kind: { type: 'int', min: 0, max: 1 << 26 }, default: 1 << 20, shown: '`1048576`', engine: 'kernel',
    doc: 'distinct PCs per kernel that get a `KCOV_UNIQUE_ENABLE` guard. Later PCs get none: they are recorded every time and never de-duplicated, as a PC beyond the bitmap would be',
  },
  {
    env: 'KCOV_REQUEST_TIMEOUT', key: 'requestTimeout', kind: { type: 'int', min: 0, max: MS }, default: 30_000, shown: '`30000`',
    doc: 'ms allowed to receive a whole request, body included (`0` = no limit). Past it: **408 ETIMEDOUT**',
  },
  {
    env: 'KCOV_HEADERS_TIMEOUT', key: 'headersTimeout', kind: { type: 'int', min: 1, max: MS }, default: 10_000, shown: '`10000`',
    doc: 'ms allowed to receive the request line and headers (at most `KCOV_REQUEST_TIMEOUT`). Past it: **408 ETIMEDOUT**',
  },
  {
    env: 'KCOV_CONNECTION_TIMEOUT', key: 'connectionTimeout', kind: { type: 'int', min: 0, max: MS }, default: 0, shown: '`0`',
    doc: 'ms a socket may stay silent (`0` = no limit). If set, it must be longer than `KCOV_MAX_WAIT`',
  },
  {
    env: 'KCOV_KEEPALIVE_TIMEOUT', key: 'keepAliveTimeout', kind: { type: 'int', min: 1, max: MS }, default: 72_000, shown: '`72000`',
    doc: 'ms an idle keep-alive connection is kept open',
  },
  {
    env: 'KCOV_MAX_WAIT', key: 'maxWait', kind: { type: 'int', min: 0, max: 3_600_000 }, default: 30_000, shown: '`30000`',
    doc: 'longest long-poll wait in ms. A larger `?wait=` is cut down to this',
  },
  {
    env: 'KCOV_SHUTDOWN_TIMEOUT', key: 'shutdownTimeout', kind: { type: 'int', min: 1, max: MS }, default: 10_000, shown: '`10000`',
    doc: 'ms a graceful shutdown may take. At that deadline requests still unanswered (stalled uploads) get **503 EBUSY** and the process exits 0; see [limits](limits.md#shutdown)',
  },
  {
    env: 'KCOV_SHUTDOWN_GRACE', key: 'shutdownGrace', kind: { type: 'int', min: 0, max: MS }, default: 2000, shown: '`2000`',
    doc: 'ms a shutdown keeps accepting connections (answering `/readyz` 503 and other requests 503 EBUSY) before it stops listening',
  },
  {
    env: 'KCOV_COVER', key: 'cover', kind: { type: 'bool' }, default: true, shown: '`on`',
    doc: '`off` (or `0`, `false`, `no`): keep no cover union (cumulative coverage); `/cover` and `?new=true` are then **501 EOPNOTSUPP**. See [Fleet](fleet.md)',
  },
  {
    env: 'KCOV_FLEET_URL', key: 'fleetUrl', kind: { type: 'string' }, default: undefined, shown: 'unset',
    doc: '`redis://host:port` (Redis or Valkey; several comma-separated for a cluster): the cover unions live there under each kernel\'s `corpus`, shared by every instance. See [Fleet](fleet.md)',
  },
  {
    env: 'KCOV_FLEET_CLUSTER', key: 'fleetCluster', kind: { type: 'bool' }, default: false, shown: '`false`',
    doc: '`true` (or `1`, `yes`, `on`): use the Redis Cluster client even with one seed URL (several URLs in `KCOV_FLEET_URL` always do). See [Fleet](fleet.md#redis-cluster-and-valkey)',
  },
  {
    env: 'KCOV_FLEET_TIMEOUT_MS', key: 'fleetTimeoutMs', kind: { type: 'int', min: 1, max: 60_000 }, default: 250, shown: '`250`',
    doc: 'longest wait of `?new=true` for the fleet\'s answer; past it the local answer stands',
  },
  {
    env: 'KCOV_FLEET_FLUSH_MS', key: 'fleetFlushMs', kind: { type: 'int', min: 1, max: 60_000 }, default: 50, shown: '`50`',
    doc: 'interval of the batched, pipelined pushes to the fleet (ingestion never waits on them)',
  },
  {
    env: 'KCOV_UI_SAMPLE_MS', key: 'uiSampleMs', kind: { type: 'int', min: 0, max: 3_600_000 }, default: 1000, shown: '`1000`',
    doc: 'ms between samples of the dashboard\'s coverage history (`GET /v1/history`, `/ui`), taken only when something moved; `0` = no history. See [Dashboard](dashboard.md)',
  },
  {
    env: 'KCOV_UI_HISTORY', key: 'uiHistory', kind: { type: 'int', min: 4, max: 1 << 16 }, default: 512, shown: '`512`',
    doc: 'samples of that history held (even); when full every other one is dropped. Charged to `KCOV_MEMORY_LIMIT`, at most 1/16 of it',
  },
  { env: 'LOG_LEVEL', key: 'logLevel', kind: { type: 'string' }, default: 'info', shown: '`info`', doc: 'pino level of the structured JSON logs on stdout' },
  {
    env: 'KCOV_LOG_REQUESTS', key: 'logRequests', kind: { type: 'bool' }, default: 'false', shown: '`false`',
    doc: 'two log lines per request ("incoming request", "request completed", with `reqId`) at `info`: `1`/`true`/`yes`/`on`. Off by default: they cost more than a small request (see [Performance](performance.md))',
  },
] as const satisfies readonly SettingRow[];

type Row = (typeof SETTINGS)[number];
type ValueOf<R extends Row> = R['kind']['type'] extends 'dialect'
  ? DialectName
  : R['kind'] extends { readonly type: 'enum'; readonly values: readonly (infer V)[] }
    ? V
  : R['kind']['type'] extends 'bool'
    ? boolean
  : R['kind']['type'] extends 'string'
    ? R['default'] extends undefined ? string | undefined : string
    : R['default'] extends undefined ? number | undefined : number;

/** Every setting by its key (SETTINGS' `key`), typed by its kind. */
export type SettingValues = { [R in Row as R['key']]: ValueOf<R> };

export interface Config extends SettingValues {}

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

function parseSetting(row: SettingRow, v: string | undefined): unknown {
  if (v === undefined && row.kind.type !== 'bool') return typeof row.default === 'function' ? row.default() : row.default;
  if (v === undefined) return parseSetting(row, String(row.default));
  const k = row.kind;
  switch (k.type) {
    case 'int':
      return int(v, row.env, k.min, k.max);
    case 'size':
      return parseSize(v, row.env);
    case 'dialect': {
      const d = v.toLowerCase();
      if (!isDialectName(d)) throw new Error(`${row.env}: "${d}" is not one of ${DIALECT_NAMES.join(', ')}`);
      return d;
    }
    case 'bool': {
      const b = v.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(b)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(b)) return false;
      throw new Error(`${row.env}: "${v}" is not a boolean (1, true, yes, on / 0, false, no, off)`);
    }
    case 'enum': {
      const x = v.trim().toLowerCase();
      if (!k.values.includes(x)) throw new Error(`${row.env}: "${v}" is not ${k.values.join(', ')}`);
      return x;
    }
    case 'string':
      // An empty optional string is unset (KCOV_TOKEN= turns auth off).
      return v === '' && row.default === undefined ? undefined : v;
  }
}

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
  const e: Record<string, string | undefined> = { ...env, ...flagsToEnv(argv) };
  const out: Record<string, unknown> = {};
  for (const row of SETTINGS as readonly SettingRow[]) out[row.key] = parseSetting(row, e[row.env]);
  const config = out as unknown as Config;
  if (config.uiHistory % 2 !== 0) throw new Error(`KCOV_UI_HISTORY: ${config.uiHistory} must be even (the history halves when full)`);
  // A socket timeout shorter than a long-poll would cut the poll off mid-wait.
  if (config.connectionTimeout !== 0 && config.connectionTimeout <= config.maxWait) {
    throw new Error(`KCOV_CONNECTION_TIMEOUT (${config.connectionTimeout} ms) must be 0 or longer than KCOV_MAX_WAIT (${config.maxWait} ms)`);
  }
  // A JSON body is a body.
  config.jsonLimit = Math.min(config.jsonLimit, config.bodyLimit);
  checkFleet(config);
  return config;
}

/** The fleet's settings agree with each other. */
function checkFleet(config: Config): void {
  if (config.fleetUrl !== undefined) {
    for (const u of config.fleetUrl.split(',')) {
      if (!/^rediss?:\/\/[^\s/]+(:\d+)?\/?$/.test(u.trim())) throw new Error(`KCOV_FLEET_URL: "${u}" is not redis://host:port`);
    }
    if (!config.cover) throw new Error('KCOV_FLEET_URL needs the cover union: KCOV_COVER is off');
  }
}

/** What the engine is built with: the rows marked `engine`, the per-kernel caps among them as `kernelCaps`. */
export function engineOptions(config: Config): EngineOptions {
  const options: Record<string, unknown> = {};
  const kernelCaps: Record<string, unknown> = {};
  for (const row of SETTINGS as readonly SettingRow[]) {
    if (row.engine === 'engine') options[row.key] = config[row.key as keyof Config];
    else if (row.engine === 'kernel') kernelCaps[row.key] = config[row.key as keyof Config];
  }
  return { ...(options as unknown as EngineOptions), kernelCaps, ...(config.cover ? {} : { cover: false }) };
}

/** The configuration table of docs/configuration.md. */
export function settingsTable(): string {
  const rows = (SETTINGS as readonly SettingRow[]).map((r) => `| \`${r.env}\` | ${r.shown} | ${r.doc} |`);
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n') + '\n';
}
