/**
 * The last pass over the OpenAPI document, applied to every route at once so
 * that route files only declare what is theirs (summary, schemas, the kernel
 * statuses they can give). Here, for every operation:
 * - an operationId derived from method and path (unless the route declares one);
 * - the bearer scheme (KCOV_TOKEN) on everything but the probes;
 * - every error as application/problem+json with the Problem schema, each status
 *   described once in components.responses;
 * - the HTTP-level statuses any route can give (API.md Additions): 400 framing,
 *   401 without the token, 404 for path parameters, 408, 412 ESTALE, 413/415 on
 *   bodies, 414/431, 503 while draining;
 * - the kcovd-boot / x-request-id headers and the if-kcovd-boot parameter;
 * - descriptions instead of "Default Response", examples for the main bodies;
 * - components nobody references are dropped.
 */
import { OPEN_ROUTES } from './auth.js';

type Json = Record<string, any>;

const PROBLEM_REF = '#/components/schemas/Problem';
const PROBLEM_JSON = 'application/problem+json';

/** Names of the shared error responses, their meaning and an example errno. */
const ERRORS: Record<number, { name: string; description: string; errno: string; code: number; detail: string }> = {
  400: {
    name: 'BadRequest',
    description: 'EINVAL: a malformed request the kernel never sees (bad JSON, wrong type, unknown field, bad framing, invalid gzip body), ' +
      "or the kernel's own EINVAL, ENOTTY or EFAULT for an argument it rejects",
    errno: 'EINVAL', code: 22, detail: 'body/tid: Invalid input: expected number, received string',
  },
  401: {
    name: 'Unauthorized',
    description: 'EACCES: KCOV_TOKEN is set and the request has no `Authorization: Bearer <token>` or another token; ' +
      'carries `WWW-Authenticate: Bearer realm="kcovd"`',
    errno: 'EACCES', code: 13, detail: 'this server needs Authorization: Bearer <KCOV_TOKEN>',
  },
  403: {
    name: 'Forbidden',
    description: "EPERM or EACCES: the dialect's kernel refuses the caller (e.g. another thread's descriptor)",
    errno: 'EPERM', code: 1, detail: 'the descriptor is enabled by another thread',
  },
  404: {
    name: 'NotFound',
    description: 'ENOENT, EBADF or ESRCH: no such kernel, descriptor (fd), thread, remote or CPU',
    errno: 'EBADF', code: 9, detail: 'kernel "default" has no fd 7',
  },
  408: {
    name: 'RequestTimeout',
    description: 'ETIMEDOUT: the request was not received in full within KCOV_REQUEST_TIMEOUT',
    errno: 'ETIMEDOUT', code: 110, detail: 'the request was not received within 30000 ms',
  },
  409: {
    name: 'Conflict',
    description: "EBUSY, EEXIST, ENXIO or ENOBUFS as the dialect's kernel answers (wrong state, already exists); " +
      'ETIMEDOUT when a bounded barrier wait (KCOV_BARRIER_TIMEOUT_MS) ran out with nothing changed',
    errno: 'EBUSY', code: 16, detail: 'KCOV_ENABLE: the descriptor is already enabled',
  },
  412: {
    name: 'PreconditionFailed',
    description: 'ESTALE: `if-kcovd-boot` names another start of the service; nothing was changed',
    errno: 'ESTALE', code: 116, detail: 'if-kcovd-boot "0b8f…" names another start of the service',
  },
  413: {
    name: 'ContentTooLarge',
    description: '{errno}: the body (for a compressed body, its decoded size) is larger than KCOV_BODY_LIMIT; nothing was applied',
    errno: 'E2BIG', code: 7, detail: 'request body is larger than the limit of 67108864 bytes',
  },
  414: {
    name: 'UriTooLong',
    description: '{errno}: the request target is longer than the server accepts',
    errno: 'ENAMETOOLONG', code: 36, detail: 'the request target is too long',
  },
  415: {
    name: 'UnsupportedMediaType',
    description: 'EINVAL: a Content-Type the route does not take, or a Content-Encoding other than gzip, deflate, br or identity',
    errno: 'EINVAL', code: 22, detail: 'unsupported Content-Type "text/csv"',
  },
  416: {
    name: 'RangeNotSatisfiable',
    description: 'EINVAL: the Range lies outside the area; carries `Content-Range: bytes */<size>`',
    errno: 'EINVAL', code: 22, detail: 'Range bytes=9000-9100 is outside the 8192-byte area',
  },
  431: {
    name: 'HeaderFieldsTooLarge',
    description: '{errno}: the request headers are larger than the server accepts',
    errno: 'ENAMETOOLONG', code: 36, detail: 'request header fields too large',
  },
  501: {
    name: 'NotImplemented',
    description: "EOPNOTSUPP or ENOTSUPP: the dialect (or the kernel's build options) has no such feature",
    errno: 'ENOTSUPP', code: 524, detail: 'KCOV_TRACE_CMP needs CONFIG_KCOV_ENABLE_COMPARISONS',
  },
  503: {
    name: 'ServiceUnavailable',
    description: 'EBUSY: the server is draining for shutdown (or shedding load); carries `Retry-After`',
    errno: 'EBUSY', code: 16, detail: 'the server is shutting down',
  },
  507: {
    name: 'InsufficientStorage',
    description: 'ENOMEM: the memory budget (KCOV_MEMORY_LIMIT) or a service cap (KCOV_MAX_KERNELS, _DESCRIPTORS, _THREADS, _REMOTES) is exhausted',
    errno: 'ENOMEM', code: 12, detail: 'KCOV_INIT_TRACE: could not allocate 8388608 bytes',
  },
};

const REASON: Record<number, string> = {
  200: 'OK', 201: 'Created', 204: 'No Content', 206: 'Partial Content', 304: 'Not Modified', 503: 'Service Unavailable',
};

const TITLES: Record<string, string> = {
  EINVAL: 'Invalid argument', EACCES: 'Permission denied', EPERM: 'Operation not permitted', EBADF: 'Bad file descriptor',
  ETIMEDOUT: 'Connection timed out', EBUSY: 'Device or resource busy', ESTALE: 'Stale file handle',
  E2BIG: 'Argument list too long', ENAMETOOLONG: 'File name too long', ENOTSUPP: 'Operation not supported', ENOMEM: 'Cannot allocate memory',
};

const HEADERS = {
  etag: {
    description: 'weak tag of the snapshot (the area, how many times it was written, and the representation); send it back in If-None-Match',
    schema: { type: 'string' },
  },
  'kcovd-boot': {
    description: 'identity of this start of the service; send it back as `if-kcovd-boot` to be refused (412 ESTALE) after a restart',
    schema: { type: 'string' },
  },
  'x-request-id': {
    description: "the request's id: the client's `x-request-id` when it is a sane token, else a new UUID",
    schema: { type: 'string' },
  },
};

function isParam(seg: string): boolean {
  return seg.startsWith('{') || seg.startsWith(':');
}

/**
 * GET /v1/kernels/{kernel}/descriptors/{fd}/coverage -> getKernelDescriptorCoverage: the method,
 * then each literal segment but `v1`, singular when a parameter follows it.
 */
export function operationIdOf(method: string, path: string): string {
  const segs = path.split('/').filter((s) => s !== '' && s !== 'v1');
  const words: string[] = [];
  segs.forEach((s, i) => {
    if (isParam(s)) return;
    const next = segs[i + 1];
    const w = next !== undefined && isParam(next) && s.endsWith('s') ? s.slice(0, -1) : s;
    for (const part of w.split(/[^A-Za-z0-9]+/)) if (part !== '') words.push(part[0]!.toUpperCase() + part.slice(1));
  });
  return method.toLowerCase() + (words.length > 0 ? words.join('') : 'Root');
}

/**
 * The errno a status carries: the contract's (E2BIG, ENAMETOOLONG) once the Problem schema
 * knows it, else EINVAL, which is what a server without it sends.
 */
function errnoOf(status: number, known: readonly string[] | undefined): { errno: string; code: number } {
  const e = ERRORS[status]!;
  return known === undefined || known.includes(e.errno) ? e : { errno: 'EINVAL', code: 22 };
}

function problemExample(status: number, known: readonly string[] | undefined): Json {
  const e = ERRORS[status]!;
  const { errno, code } = errnoOf(status, known);
  return {
    type: `urn:kcovd:errno:${errno}`, title: TITLES[errno] ?? errno, status, detail: e.detail, errno, code,
    instance: '/v1/kernels/default/descriptors/7/ioctl/KCOV_ENABLE',
  };
}

function errorResponse(status: number, known: readonly string[] | undefined): Json {
  const e = ERRORS[status]!;
  const headers: Json = { ...refHeaders() };
  if (status === 401) headers['www-authenticate'] = { description: 'Bearer realm="kcovd" (RFC 6750)', schema: { type: 'string' } };
  if (status === 503) headers['retry-after'] = { description: 'seconds to wait before retrying', schema: { type: 'integer' } };
  if (status === 416) headers['content-range'] = { description: 'bytes */<size of the area>', schema: { type: 'string' } };
  return {
    description: e.description.replace('{errno}', errnoOf(status, known).errno),
    headers,
    content: { [PROBLEM_JSON]: { schema: { $ref: PROBLEM_REF }, example: problemExample(status, known) } },
  };
}

function refHeaders(): Json {
  return {
    'kcovd-boot': { $ref: '#/components/headers/kcovd-boot' },
    'x-request-id': { $ref: '#/components/headers/x-request-id' },
  };
}

function isProblemResponse(r: Json): boolean {
  const content = r?.content as Json | undefined;
  if (content === undefined) return false;
  return Object.values(content).some((m: Json) => m?.schema?.$ref === PROBLEM_REF);
}

function statusesOf(path: string, method: string, op: Json, open: boolean): number[] {
  const out = [400, 408, 412, 414, 431];
  if (!open) out.push(401, 503);
  if (path.includes('{')) out.push(404);
  if (op.requestBody !== undefined || ['post', 'put', 'patch', 'delete'].includes(method)) out.push(413, 415);
  return out;
}

/** A nullable JSON body (`Schema.nullish()`) is an optional body, not a required one that may be null. */
function optionalBodies(op: Json): void {
  const content = op.requestBody?.content as Json | undefined;
  if (content === undefined) return;
  let optional = false;
  for (const media of Object.values(content) as Json[]) {
    const any = media.schema?.anyOf as Json[] | undefined;
    if (any === undefined) continue;
    const rest = any.filter((s) => s.type !== 'null');
    if (rest.length < any.length) {
      optional = true;
      media.schema = rest.length === 1 ? { ...rest[0], ...(media.schema.description ? { description: media.schema.description } : {}) } : { ...media.schema, anyOf: rest };
    }
  }
  if (optional) op.requestBody.required = false;
}

/** An operation that answers 304: its ETag on the replies, its conditional request headers. */
function conditional(op: Json, rs: Json): void {
  for (const s of ['200', '206', '304']) {
    if (rs[s] !== undefined && rs[s].$ref === undefined) rs[s].headers = { ...rs[s].headers, etag: { $ref: '#/components/headers/etag' } };
  }
  op.parameters.push(
    { name: 'if-none-match', in: 'header', required: false, schema: { type: 'string' },
      description: 'ETags (or *) the client holds; the current one answers 304 with no body, unless the request has a side effect (reset=true). With ?wait, the poll answers 304 when nothing changed in the wait' },
    { name: 'if-range', in: 'header', required: false, schema: { type: 'string' },
      description: 'ETags here are weak, so an If-Range never matches: the whole area is sent instead of the Range' },
  );
}

function collectRefs(v: unknown, out: Set<string>): void {
  if (Array.isArray(v)) {
    for (const x of v) collectRefs(x, out);
  } else if (typeof v === 'object' && v !== null) {
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') out.add(x);
      else collectRefs(x, out);
    }
  }
}

/** Drop components nothing refers to (the *Input twins of output schemas, mostly), until none is left. */
function pruneComponents(doc: Json): void {
  for (;;) {
    const refs = new Set<string>();
    collectRefs(doc.paths, refs);
    for (const [kind, group] of Object.entries(doc.components as Json)) {
      if (kind === 'securitySchemes') continue;
      for (const [name, c] of Object.entries(group as Json)) {
        const mine = new Set<string>();
        collectRefs(c, mine);
        for (const r of mine) if (r !== `#/components/${kind}/${name}`) refs.add(r);
      }
    }
    let removed = 0;
    for (const [kind, group] of Object.entries(doc.components as Json)) {
      if (kind === 'securitySchemes') continue;
      for (const name of Object.keys(group as Json)) {
        if (!refs.has(`#/components/${kind}/${name}`)) {
          delete (group as Json)[name];
          removed++;
        }
      }
    }
    if (removed === 0) return;
  }
}

export interface Examples {
  request?: Record<string, unknown>;
  response?: Record<number, Record<string, unknown>>;
}

export interface FinishOptions {
  /** Extra routes open without the token (KCOV_DOCS_PUBLIC does not change the document). */
  open?: ReadonlySet<string>;
  /** Examples by "METHOD /path", per media type. */
  examples?: Record<string, Examples>;
}

export function finishDocument(doc: Json, opts: FinishOptions = {}): Json {
  const open = new Set([...OPEN_ROUTES, ...(opts.open ?? [])]);
  doc.info = { ...doc.info, license: { name: 'MIT', identifier: 'MIT' } };
  doc.servers ??= [{ url: '/', description: 'the server that serves this document' }];
  doc.components ??= {};
  doc.components.securitySchemes = {
    bearer: {
      type: 'http',
      scheme: 'bearer',
      description: 'KCOV_TOKEN: when the server is started with it, every route but /healthz and /readyz needs ' +
        '`Authorization: Bearer <token>` (else 401 EACCES). A server without KCOV_TOKEN takes any request.',
    },
  };
  doc.components.headers = HEADERS;
  doc.components.parameters = {
    'if-kcovd-boot': {
      name: 'if-kcovd-boot',
      in: 'header',
      required: false,
      description: 'the kcovd-boot id the client knows; another id is refused with 412 ESTALE and changes nothing',
      schema: { type: 'string' },
    },
  };
  const responses: Json = {};
  const known = doc.components.schemas?.Problem?.properties?.errno?.enum as string[] | undefined;
  for (const status of Object.keys(ERRORS).map(Number)) responses[ERRORS[status]!.name] = errorResponse(status, known);
  doc.components.responses = responses;
  doc.security = [{ bearer: [] }];

  const seen = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths as Json)) {
    for (const [method, op] of Object.entries(item as Json) as Array<[string, Json]>) {
      if (typeof op !== 'object' || op === null || !('responses' in op)) continue;
      const key = `${method.toUpperCase()} ${path}`;
      let id: string = op.operationId ?? operationIdOf(method, path);
      while (seen.has(id)) id += '_';
      seen.add(id);
      op.operationId = id;
      const isOpen = open.has(path);
      if (isOpen) op.security = [];
      op.parameters = [...(op.parameters ?? []), { $ref: '#/components/parameters/if-kcovd-boot' }];
      optionalBodies(op);

      const rs = op.responses as Json;
      for (const [status, r] of Object.entries(rs) as Array<[string, Json]>) {
        const s = Number(status);
        if (ERRORS[s] !== undefined && isProblemResponse(r)) {
          rs[status] = { $ref: `#/components/responses/${ERRORS[s]!.name}` };
          continue;
        }
        if (r.description === undefined || r.description === 'Default Response') {
          const schemaDesc = Object.values((r.content ?? {}) as Json).map((m: Json) => m?.schema?.description).find((d) => typeof d === 'string');
          r.description = schemaDesc ?? `${REASON[s] ?? status}: ${op.summary ?? key}`;
        }
        r.headers = { ...refHeaders(), ...(r.headers ?? {}) };
      }
      for (const s of statusesOf(path, method, op, isOpen)) {
        if (rs[String(s)] === undefined) rs[String(s)] = { $ref: `#/components/responses/${ERRORS[s]!.name}` };
      }
      if (rs['304'] !== undefined) conditional(op, rs);
      op.responses = Object.fromEntries(Object.entries(rs).sort(([a], [b]) => Number(a) - Number(b)));

      const ex = opts.examples?.[key];
      if (ex?.request !== undefined) {
        for (const [type, value] of Object.entries(ex.request)) {
          const media = op.requestBody?.content?.[type];
          if (media !== undefined) media.example = value;
        }
      }
      for (const [status, byType] of Object.entries(ex?.response ?? {})) {
        for (const [type, value] of Object.entries(byType)) {
          const media = rs[status]?.content?.[type];
          if (media !== undefined) media.example = value;
        }
      }
    }
  }
  pruneComponents(doc);
  return doc;
}
