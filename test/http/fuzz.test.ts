/**
 * Property-based fuzzing of every route (fast-check). Each run starts from a
 * fresh engine and sends a random sequence of requests: some well formed
 * enough to reach the kernel, most broken in one way or another (bad JSON,
 * wrong types, negative / huge / fractional numbers, u64 strings out of range
 * or not hex, unknown fields, binary bodies of every length, wrong content
 * types, bodies past KCOV_BODY_LIMIT, deep nesting, bad tokens).
 *
 * After every reply:
 *  - it is 2xx, or problem+json with an errno whose status is the contract's
 *    (4xx; 501 EOPNOTSUPP and 507 ENOMEM, which the contract maps to 5xx, are the
 *    only 5xx allowed; HTTP-level 401/413/415/416 keep their own status);
 *  - x-request-id is echoed;
 *  - Engine.checkInvariants() finds nothing;
 *  - a failed request, or a GET that does not reset, changed nothing (threads a
 *    request names are created on sight, as the contract says: those are allowed).
 *
 * CI: fixed seed, a few thousand requests. Longer:
 *   npm run fuzz -- --runs 100000 [--seed N]
 * (or KCOV_FUZZ_RUNS / KCOV_FUZZ_SEED with npm test).
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { statusOf } from '../../src/http/problem.js';
import type { ErrnoName } from '../../src/engine/errno.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const TARGET = Number(arg('runs') ?? process.env.KCOV_FUZZ_RUNS ?? 3000);
const SEED = Number(arg('seed') ?? process.env.KCOV_FUZZ_SEED ?? 20240607);
/** fast-check's replay path of a failure ("--path 401:..."), to rerun just that case. */
const PATH = arg('path');
const BODY_LIMIT = 4096;
const TOKEN = 'fuzz-token';
const MAX_SEQ = 16;

// ---- value generators ------------------------------------------------------

const hugeNumbers = fc.constantFrom(-1, -0, 0.5, 1e21, 2 ** 53, 2 ** 64, -(2 ** 63), Number.MAX_VALUE, 1e-7, 4294967296);
const u64Strings = fc.oneof(
  fc.constantFrom('0x0', '0xffffffffffffffff', '0x10000000000000000', '0xFFFFFFFFFFFFFFFFF', '18446744073709551615',
    '18446744073709551616', '0x', '0xg', '-1', ' 1', '1e3', '', '0x0000000000000000000000001', '00017', 'NaN'),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((b) => `0x${b.toString(16)}`),
  fc.bigInt({ min: 0n, max: (1n << 66n) }).map((b) => b.toString()),
);
const smallInts = fc.integer({ min: 0, max: 80 });
const anyScalar = fc.oneof(smallInts, hugeNumbers, u64Strings, fc.boolean(), fc.constant(null), fc.string({ maxLength: 8 }));
/** A value that is usually plausible, often not. */
const fuzzValue = fc.oneof({ weight: 4, arbitrary: smallInts }, { weight: 3, arbitrary: anyScalar }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) });
const tid = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 1, arbitrary: anyScalar });
const pcList = fc.array(fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 0, max: 2 ** 40 }) }, { weight: 2, arbitrary: u64Strings }, { weight: 1, arbitrary: anyScalar }), { maxLength: 40 });
const cmpRec = fc.record({ type: fuzzValue, size: fc.constantFrom(1, 2, 4, 8, 3, 0), const: fc.boolean(), arg1: fuzzValue, arg2: fuzzValue, pc: fuzzValue }, { requiredKeys: ['arg1', 'arg2', 'pc'] });

const segs = {
  kernel: fc.oneof({ weight: 16, arbitrary: fc.constant('default') }, { weight: 3, arbitrary: fc.constantFrom('fz', 'k1') }, { weight: 1, arbitrary: fc.constantFrom('..', 'a b', 'x'.repeat(70), '%00', '-x', 'nokernel') }),
  fd: fc.oneof({ weight: 12, arbitrary: fc.constantFrom('3', '4') }, { weight: 3, arbitrary: fc.constantFrom('5', '6') }, { weight: 1, arbitrary: fc.constantFrom('0', '-1', '1.5', '1e3', '0x3', 'abc', '99999999999999999999', '') }),
  tid: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 1, max: 4 }).map(String) }, { weight: 1, arbitrary: fc.constantFrom('0', '-3', '2147483648', '1.5', 'x') }),
  cmd: fc.constantFrom('KCOV_INIT_TRACE', 'KCOV_ENABLE', 'KCOV_DISABLE', 'KCOV_RESET_TRACE', 'KCOV_UNIQUE_ENABLE', 'KCOV_REMOTE_ENABLE',
    'KIOSETBUFSIZE', 'KIOENABLE', 'KIODISABLE', 'KCOV_IOC_SETBUFSIZE', '0x80086301', '25444', '0x6365', '0xffffffffff', 'NOPE', '%20'),
  remote: fc.constantFrom('0x0100000000000001', '0x0200000000002a', '0:4242', '1:1', 'zz', '0x', '0:', '18446744073709551616'),
  cpu: fc.constantFrom('0', '1', '2', '-1', '4096', 'a'),
};

interface Req {
  method: string;
  url: string;
  headers: Record<string, string>;
  payload?: string | Buffer;
}

type Body = { type: string | undefined; payload: string | Buffer | undefined };

const json = (v: unknown): Body => ({ type: 'application/json', payload: JSON.stringify(v) });

/** Bodies that are wrong as bodies, whatever the route. */
const brokenBody: fc.Arbitrary<Body> = fc.oneof(
  fc.string({ maxLength: 40 }).map((s) => ({ type: 'application/json', payload: s })),
  fc.constantFrom('{', '{"tid":1,}', '[1,2', 'nul', '"\\ud800"', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{}}}', '1e999', '')
    .map((s) => ({ type: 'application/json', payload: s })),
  fc.jsonValue({ maxDepth: 4 }).map(json),
  fc.integer({ min: 1, max: 200_000 }).map((n) => ({ type: 'application/json', payload: '['.repeat(n) + ']'.repeat(n) })),
  fc.integer({ min: 1, max: 50_000 }).map((n) => ({ type: 'application/json', payload: `{"tid":1,"arg":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}` })),
  fc.integer({ min: 1, max: 50_000 }).map((n) => ({ type: 'application/json', payload: `{"pcs":${'['.repeat(n)}${']'.repeat(n)}}` })),
  fc.integer({ min: BODY_LIMIT + 1, max: BODY_LIMIT * 4 }).chain((n) => fc.constantFrom(
    { type: 'application/json', payload: `{"pcs":[${'1,'.repeat(n / 2)}1]}` },
    { type: 'application/octet-stream', payload: Buffer.alloc(n + (8 - (n % 8))) },
  )),
  fc.uint8Array({ maxLength: 80 }).map((b) => ({ type: 'application/octet-stream', payload: Buffer.from(b) })),
  fc.uint8Array({ maxLength: 40 }).map((b) => ({ type: 'application/json', payload: Buffer.from(b) })),
  fc.tuple(fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'foo/bar', 'application/json; charset=latin1', '', ';;;', 'application/octet-stream; x=y'), fc.string({ maxLength: 20 }))
    .map(([type, s]) => ({ type, payload: s })),
);

const ioctlArg = fc.oneof(
  fc.integer({ min: 2, max: 64 }),
  fc.constantFrom('pc', 'cmp', 0, 1, 2, 'none'),
  fuzzValue,
  fc.record({ trace_mode: fuzzValue, area_size: fuzzValue, handles: fc.array(u64Strings, { maxLength: 3 }), common_handle: u64Strings }, { requiredKeys: [] }),
  fc.record({ subsystem: fuzzValue, id: fuzzValue }, { requiredKeys: [] }),
);

const eventsJson = fc.oneof(
  pcList.map((pcs) => ({ pcs })),
  fc.array(fc.string({ maxLength: 12 }), { maxLength: 5 }).map((sites) => ({ sites })),
  fc.array(cmpRec, { maxLength: 5 }).map((cmps) => ({ cmps })),
  fc.record({ val: fuzzValue, size: fc.constantFrom(8, 16, 32, 64, 7), cases: fc.array(fuzzValue, { maxLength: 4 }), pc: fuzzValue }).map((s) => ({ switches: [s] })),
  fc.record({ pcs: pcList, sites: fc.array(fc.string(), { maxLength: 3 }), extra: fuzzValue }, { requiredKeys: [] }),
);

const binaryBody = fc.oneof(
  fc.integer({ min: 0, max: 24 }).map((n) => Buffer.from(new BigUint64Array(Array.from({ length: n }, (_, i) => BigInt(0x1000 + i))).buffer)),
  fc.integer({ min: 0, max: 100 }).map((n) => Buffer.alloc(n, 0xab)),
);

/** A route with a body that makes sense for it (often), or a broken one. */
function withBody(good: fc.Arbitrary<Body>): fc.Arbitrary<Body> {
  return fc.oneof({ weight: 5, arbitrary: good }, { weight: 2, arbitrary: brokenBody }, { weight: 1, arbitrary: fc.constant<Body>({ type: undefined, payload: undefined }) });
}

const query = (keys: string[], values: fc.Arbitrary<string>) =>
  fc.dictionary(fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...keys) }, { weight: 1, arbitrary: fc.constantFrom('x', '__proto__', 'reset[]') }), values, { maxKeys: 3 })
    .map((q) => {
      const s = new URLSearchParams(q).toString();
      return s === '' ? '' : `?${s}`;
    });

const qvalues = fc.oneof(fc.constantFrom('true', 'false', '1', '0', 'pc', 'cmp', 'json', 'binary', 'text', 'task', 'softirq', 'interrupt', '3', '-1', '1e3', '0.5', ''), fc.string({ maxLength: 6 }));

const accept = fc.constantFrom('application/json', 'application/octet-stream', 'text/plain', '*/*', 'image/png', 'application/json;q=0, text/plain', '');
const range = fc.oneof(fc.constant(undefined), fc.constantFrom('bytes=0-7', 'bytes=8-', 'bytes=-8', 'bytes=100-2', 'bytes=0-99999', 'bytes=a-b', 'items=0-1', 'bytes=0-1,4-5'));

/** One request: route template, method, params, query, headers and body. */
const request: fc.Arbitrary<Req> = fc.oneof(
  // kernels
  fc.constant({ m: 'GET', p: '/v1/kernels', b: null }),
  fc.record({ m: fc.constant('POST'), p: fc.constant('/v1/kernels'), b: fc.constant(withBody(fc.record({ name: fc.oneof(segs.kernel, fuzzValue), dialect: fc.oneof(fc.constantFrom('linux', 'openbsd', 'netbsd', 'freebsd', 'plan9'), fuzzValue), ncpus: fuzzValue, max_entries: fuzzValue, junk: fuzzValue }, { requiredKeys: ['dialect'] }).map(json))) }),
  fc.record({ m: fc.constantFrom('GET', 'DELETE'), p: segs.kernel.map((k) => `/v1/kernels/${k}`), b: fc.constant(null) }),
  // descriptors
  fc.record({ m: fc.constant('POST'), p: segs.kernel.map((k) => `/v1/kernels/${k}/descriptors`), b: fc.constant(withBody(fc.record({ tid, junk: fuzzValue }, { requiredKeys: [] }).map(json))) }),
  fc.record({ m: fc.constant('GET'), p: segs.kernel.map((k) => `/v1/kernels/${k}/descriptors`), b: fc.constant(null) }),
  fc.record({ m: fc.constantFrom('GET', 'DELETE'), p: fc.tuple(segs.kernel, segs.fd).map(([k, f]) => `/v1/kernels/${k}/descriptors/${f}`), b: fc.constant(null) }),
  fc.record({ m: fc.constant('POST'), p: fc.tuple(segs.kernel, segs.fd, segs.cmd).map(([k, f, c]) => `/v1/kernels/${k}/descriptors/${f}/ioctl/${c}`), b: fc.constant(withBody(fc.record({ tid, arg: ioctlArg, junk: fuzzValue }, { requiredKeys: ['tid'] }).map(json))) }),
  fc.record({ m: fc.constant('POST'), p: fc.tuple(segs.kernel, segs.fd, segs.cmd).map(([k, f, c]) => `/v1/kernels/${k}/descriptors/${f}/ioctl/${c}`), b: fc.constant(withBody(fc.record({ tid, arg: ioctlArg }).map(json))) }),
  // coverage
  fc.record({ m: fc.constant('GET'), p: fc.tuple(segs.kernel, segs.fd, query(['reset', 'format', 'mode', 'wait', 'since'], qvalues)).map(([k, f, q]) => `/v1/kernels/${k}/descriptors/${f}/coverage${q}`), b: fc.constant(null), accept, range }),
  fc.record({ m: fc.constant('PUT'), p: fc.tuple(segs.kernel, segs.fd).map(([k, f]) => `/v1/kernels/${k}/descriptors/${f}/coverage/count`), b: fc.constant(withBody(fc.record({ count: fc.oneof(smallInts, fuzzValue), junk: fuzzValue }, { requiredKeys: ['count'] }).map(json))) }),
  // threads
  fc.record({ m: fc.constant('GET'), p: segs.kernel.map((k) => `/v1/kernels/${k}/threads`), b: fc.constant(null) }),
  fc.record({ m: fc.constantFrom('GET', 'DELETE'), p: fc.tuple(segs.kernel, segs.tid).map(([k, x]) => `/v1/kernels/${k}/threads/${x}`), b: fc.constant(null) }),
  fc.record({ m: fc.constant('PUT'), p: fc.tuple(segs.kernel, segs.tid).map(([k, x]) => `/v1/kernels/${k}/threads/${x}`), b: fc.constant(withBody(fc.record({ pid: fuzzValue, parent: tid }, { requiredKeys: [] }).map(json))) }),
  fc.record({ m: fc.constant('POST'), p: fc.tuple(segs.kernel, segs.tid, query(['kind'], qvalues)).map(([k, x, q]) => `/v1/kernels/${k}/threads/${x}/events${q}`), b: fc.constant(withBody(fc.oneof(eventsJson.map(json), binaryBody.map((payload) => ({ type: 'application/octet-stream', payload })))) ) }),
  fc.record({ m: fc.constantFrom('POST', 'DELETE'), p: fc.tuple(segs.kernel, segs.tid).map(([k, x]) => `/v1/kernels/${k}/threads/${x}/remote`), b: fc.constant(withBody(fc.oneof(fc.record({ handle: u64Strings }), fc.record({ subsystem: fuzzValue, id: fuzzValue })).map(json))) }),
  fc.record({ m: fc.constantFrom('PUT', 'DELETE'), p: fc.tuple(segs.kernel, segs.tid).map(([k, x]) => `/v1/kernels/${k}/threads/${x}/silence`), b: fc.constant(null) }),
  // remotes and cpus
  fc.record({ m: fc.constant('GET'), p: segs.kernel.map((k) => `/v1/kernels/${k}/remotes`), b: fc.constant(null) }),
  fc.record({ m: fc.constantFrom('PUT', 'DELETE'), p: fc.tuple(segs.kernel, segs.remote).map(([k, r]) => `/v1/kernels/${k}/remotes/${r}`), b: fc.constant(null) }),
  fc.record({ m: fc.constant('POST'), p: fc.tuple(segs.kernel, segs.remote, query(['context', 'tid', 'cpu', 'kind'], qvalues)).map(([k, r, q]) => `/v1/kernels/${k}/remotes/${r}/events${q}`), b: fc.constant(withBody(fc.oneof(eventsJson.map(json), binaryBody.map((payload) => ({ type: 'application/octet-stream', payload }))))) }),
  fc.record({ m: fc.constant('GET'), p: segs.kernel.map((k) => `/v1/kernels/${k}/cpus`), b: fc.constant(null) }),
  fc.record({ m: fc.constant('GET'), p: fc.tuple(segs.kernel, segs.cpu).map(([k, c]) => `/v1/kernels/${k}/cpus/${c}`), b: fc.constant(null) }),
  // service and nowhere
  fc.record({ m: fc.constant('GET'), p: fc.constantFrom('/healthz', '/readyz', '/metrics', '/nope', '/v1', '/v1/kernels/default/nope', '/v1/kernels//descriptors'), b: fc.constant(null) }),
  fc.record({ m: fc.constantFrom('PATCH', 'OPTIONS', 'HEAD', 'DELETE'), p: fc.constantFrom('/v1/kernels', '/v1/kernels/default/descriptors', '/healthz'), b: fc.constant(null) }),
).chain((r: { m: string; p: string; b: fc.Arbitrary<Body> | null; accept?: string; range?: string | undefined }) =>
  fc.tuple(
    r.b ?? fc.oneof({ weight: 6, arbitrary: fc.constant<Body>({ type: undefined, payload: undefined }) }, { weight: 1, arbitrary: brokenBody }),
    fc.oneof({ weight: 20, arbitrary: fc.constant(`Bearer ${TOKEN}`) }, { weight: 1, arbitrary: fc.constantFrom(undefined, '', 'Bearer', `Bearer ${TOKEN}x`, `bearer  ${TOKEN}`, `Basic ${TOKEN}`, `Bearer ${TOKEN.slice(1)}`, 'Bearer \u00e9') }),
    fc.option(fc.constantFrom('req-1', 'a'.repeat(200), 'bad id\n', 'trace:42'), { nil: undefined }),
  ).map(([body, auth, rid]) => {
    const headers: Record<string, string> = {};
    if (body.type !== undefined) headers['content-type'] = body.type;
    if (auth !== undefined) headers.authorization = auth;
    if (rid !== undefined) headers['x-request-id'] = rid;
    if (r.accept !== undefined && r.accept !== '') headers.accept = r.accept;
    if (r.range !== undefined) headers.range = r.range;
    const req: Req = { method: r.m, url: r.p, headers };
    if (body.payload !== undefined) req.payload = body.payload;
    return req;
  }));

/** Well-formed steps that take a descriptor deep into its state machine, so the fuzz reaches traced states. */
const H = { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` };
const setupStep: fc.Arbitrary<Req> = fc.oneof(
  fc.constant({ method: 'POST', url: '/v1/kernels/default/descriptors', headers: H, payload: '{}' }),
  fc.record({ fd: fc.constantFrom(3, 4), words: fc.integer({ min: 2, max: 600 }), tid: fc.integer({ min: 1, max: 3 }) })
    .map(({ fd, words, tid }) => ({ method: 'POST', url: `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, headers: H, payload: JSON.stringify({ tid, arg: words }) })),
  fc.record({ fd: fc.constantFrom(3, 4), mode: fc.constantFrom('pc', 'cmp', 0, 1), tid: fc.integer({ min: 1, max: 3 }) })
    .map(({ fd, mode, tid }) => ({ method: 'POST', url: `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_ENABLE`, headers: H, payload: JSON.stringify({ tid, arg: mode }) })),
  fc.record({ tid: fc.integer({ min: 1, max: 3 }), n: fc.integer({ min: 0, max: 700 }) })
    .map(({ tid, n }) => ({ method: 'POST', url: `/v1/kernels/default/threads/${tid}/events`, headers: H, payload: JSON.stringify({ pcs: Array.from({ length: n }, (_, i) => i * 4 + 0x1000) }) })),
  fc.constant({ method: 'POST', url: '/v1/kernels', headers: H, payload: '{"name":"fz","dialect":"linux","ncpus":2}' }),
);

// ---- state fingerprint -------------------------------------------------------

function digest(bytes: Uint8Array): string {
  return createHash('sha1').update(bytes).digest('hex');
}

interface Fingerprint {
  text: string;
  threads: Map<string, string>;
}

/** Everything a request could change, threads apart (a request may create a fresh thread). */
function fingerprint(app: FastifyInstance): Fingerprint {
  const e = app.engine;
  const parts: unknown[] = [e.budget.used];
  const threads = new Map<string, string>();
  for (const k of e.kernels.values()) {
    parts.push(k.name, k.dialect.name, k.memory, k.stats, k.remotes.count, k.remotes.keys());
    for (const d of k.descriptors.values()) {
      parts.push(d.fd, d.state, d.mode, d.lastMode, d.closed, d.owner?.tid ?? null, d.area === null ? null : digest(d.area.bytes), JSON.stringify(d.extra()));
    }
    for (const c of k.cpus) parts.push(c.area === null ? null : digest(c.area.bytes), c.section?.remote ?? null);
    for (const th of k.threads.values()) {
      threads.set(`${k.name}/${th.tid}`, JSON.stringify([th.pid, th.kcov?.fd ?? null, th.kcov?.closed ?? null, th.extra().handle, th.section?.remote ?? null, Number(th.extra().silenced), th.trace === null ? null : th.trace.mode]));
    }
  }
  return { text: JSON.stringify(parts), threads };
}

/** A thread just created on sight: its own process, nothing bound. */
const FRESH = (tid: string) => JSON.stringify([Number(tid), null, null, null, null, 0, null]);

function sameState(before: Fingerprint, after: Fingerprint): string | null {
  if (before.text !== after.text) {
    const b = JSON.parse(before.text) as unknown[], a = JSON.parse(after.text) as unknown[];
    let i = 0;
    while (i < b.length && JSON.stringify(b[i]) === JSON.stringify(a[i])) i++;
    return `engine state changed at part ${i}: ${JSON.stringify(b.slice(Math.max(0, i - 3), i + 3))} -> ${JSON.stringify(a.slice(Math.max(0, i - 3), i + 3))}`;
  }
  for (const [key, v] of before.threads) {
    if (after.threads.get(key) !== v) return `thread ${key} changed or vanished`;
  }
  for (const [key, v] of after.threads) {
    if (!before.threads.has(key) && v !== FRESH(key.split('/')[1]!)) return `thread ${key} appeared in a non-fresh state ${v}`;
  }
  return null;
}

// ---- the property ---------------------------------------------------------------

const ERRNOS = new Set(['EPERM', 'ENOENT', 'ESRCH', 'ENXIO', 'EBADF', 'ENOMEM', 'EACCES', 'EFAULT', 'EBUSY', 'EEXIST', 'EINVAL', 'ENOTTY', 'ENOBUFS', 'EOPNOTSUPP', 'ENOTSUPP', 'ETIMEDOUT']);
const HTTP_LEVEL = new Set([401, 404, 413, 415, 416]);

function checkReply(req: Req, res: { statusCode: number; headers: Record<string, unknown>; body: string }, expectId: string | undefined): string | null {
  const s = res.statusCode;
  if (expectId !== undefined && res.headers['x-request-id'] !== expectId) return `x-request-id not echoed (${String(res.headers['x-request-id'])})`;
  if (typeof res.headers['x-request-id'] !== 'string') return 'no x-request-id';
  if (s >= 200 && s < 300) {
    if (req.method === 'POST' && req.url.includes('/events') && s === 200) {
      const r = JSON.parse(res.body);
      for (const f of ['accepted', 'dropped', 'ignored']) if (!Number.isInteger(r[f]) || r[f] < 0) return `events reply ${f} = ${r[f]}`;
    }
    return null;
  }
  if (req.method === 'HEAD') return s === 404 || s === 401 ? null : `HEAD status ${s}`;
  if (!String(res.headers['content-type']).startsWith('application/problem+json')) return `status ${s} without problem+json`;
  let p: { errno?: string; status?: number; code?: unknown };
  try {
    p = JSON.parse(res.body);
  } catch {
    return `unparseable problem body ${res.body.slice(0, 80)}`;
  }
  if (typeof p.errno !== 'string' || !ERRNOS.has(p.errno)) return `problem without a known errno: ${res.body.slice(0, 120)}`;
  if (p.status !== s) return `problem status ${p.status} != ${s}`;
  if (typeof p.code !== 'number') return 'problem without code';
  const table = statusOf(p.errno as ErrnoName);
  if (s !== table && !HTTP_LEVEL.has(s)) return `status ${s} for ${p.errno}, contract says ${table}`;
  if (s === 401 && (p.errno !== 'EACCES' || !String(res.headers['www-authenticate']).startsWith('Bearer'))) return '401 without EACCES and WWW-Authenticate: Bearer';
  if (s >= 500 && !(s === 507 && p.errno === 'ENOMEM') && !(s === 501 && (p.errno === 'EOPNOTSUPP' || p.errno === 'ENOTSUPP'))) {
    return `server error ${s}: ${res.body.slice(0, 200)}`;
  }
  return null;
}

function resetEngine(app: FastifyInstance): void {
  const e = app.engine;
  e.close();
  e.createKernel({ name: 'default', dialect: e.options.dialect });
}

// About 2 ms a request on a quiet machine; leave room for a loaded one.
const TIMEOUT = Math.max(60_000, TARGET * 20);
t.setTimeout(TIMEOUT);

t.test(`fuzz every route (${TARGET} requests, seed ${SEED})`, { timeout: TIMEOUT }, async (t) => {
  const config = loadConfig({
    KCOV_NCPUS: '2', KCOV_TOKEN: TOKEN, KCOV_BODY_LIMIT: String(BODY_LIMIT), KCOV_MEMORY_LIMIT: '64K',
    KCOV_MAX_KERNELS: '3', KCOV_MAX_DESCRIPTORS: '4', KCOV_MAX_THREADS: '6', KCOV_MAX_REMOTES: '3', KCOV_MAX_GUARDS: '50', KCOV_MAX_WAIT: '3',
  });
  const app = await buildApp({ config });
  await app.ready();
  t.teardown(() => app.close());

  let requests = 0;
  const statuses = new Map<number, number>();
  const started = Date.now();
  // Sequences average (MAX_SEQ + 1) / 2 fuzzed requests plus about 3 set-up steps; passes
  // with the next seed top up until the target is reached.
  for (let pass = 0; requests < TARGET; pass++) {
    const runs = Math.max(1, Math.ceil((TARGET - requests) / ((MAX_SEQ + 1) / 2 + 3)));
    await fc.assert(
      fc.asyncProperty(
        fc.array(setupStep, { maxLength: 6 }),
        fc.integer({ min: 1, max: MAX_SEQ }).chain((n) => fc.array(request, { minLength: n, maxLength: n })),
        async (setup, fuzz) => {
          const seq = [...setup, ...fuzz];
          resetEngine(app);
          for (let i = 0; i < seq.length; i++) {
            const req = seq[i]!;
            const before = fingerprint(app);
            const res = await app.inject(req as never);
            requests++;
            statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
            const rid = req.headers['x-request-id'];
            const expectId = rid !== undefined && /^[\w.:@/+=-]{1,128}$/.test(rid) ? rid : undefined;
            const where = `request ${i} ${req.method} ${req.url} -> ${res.statusCode} ${res.body.slice(0, 200)}`;
            const bad = checkReply(req, res, expectId);
            if (bad !== null) throw new Error(`${where}: ${bad}`);
            const broken = app.engine.checkInvariants();
            if (broken.length > 0) throw new Error(`${where}: invariants: ${broken.join('; ')}`);
            const ok = res.statusCode >= 200 && res.statusCode < 300;
            const readOnly = (req.method === 'GET' || req.method === 'HEAD') && !/[?&]reset=(true|1)(&|$)/.test(req.url);
            if (!ok || readOnly) {
              const diff = sameState(before, fingerprint(app));
              if (diff !== null) throw new Error(`${where}: ${ok ? 'a read' : 'a failed request'} changed state: ${diff}`);
            }
          }
        },
      ),
      { seed: SEED + pass, numRuns: runs, endOnFailure: true, ...(PATH === undefined ? {} : { path: PATH }) },
    );
    if (PATH !== undefined) break;
  }
  const secs = (Date.now() - started) / 1000;
  t.comment(`${requests} requests in ${secs.toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
  t.ok(requests >= TARGET || PATH !== undefined, 'the target number of requests ran');
  t.ok((statuses.get(200) ?? 0) + (statuses.get(201) ?? 0) > requests / 20, 'a fair share of requests got through to the engine');
});
