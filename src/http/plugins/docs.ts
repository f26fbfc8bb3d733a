/** OpenAPI from the zod route schemas, served at /openapi.json, with a UI at /docs. */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { finishDocument, type Examples } from './openapi-doc.js';

/** Marks a content type whose body is raw bytes (little-endian words). */
export const BinaryBody = z.any().meta({ kcovdBinary: true });

type Content = Record<string, { schema: unknown }>;

function refsToComponents(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(refsToComponents);
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    out[k] = k === '$ref' && typeof x === 'string' ? x.replace('#/$defs/', '#/components/schemas/') : refsToComponents(x);
  }
  return out;
}

function contentToJson(content: Content): Record<string, { schema: unknown }> {
  const out: Record<string, { schema: unknown }> = {};
  for (const [type, { schema }] of Object.entries(content)) {
    const zs = schema as z.ZodType;
    const meta = typeof zs?.meta === 'function' ? zs.meta() : undefined;
    if (meta !== undefined && (meta as { kcovdBinary?: boolean }).kcovdBinary === true) {
      // format: binary (OAS 3.0 tools, Swagger UI's file picker) and contentMediaType (OAS 3.1): raw bytes, not a JSON string.
      out[type] = { schema: { type: 'string', format: 'binary', contentMediaType: type, description: zs.description } };
    } else if (type.startsWith('text/')) {
      out[type] = { schema: { type: 'string', description: zs.description } };
    } else {
      // Registered schemas (U64, Problem …) live in components; point there, as jsonSchemaTransform does.
      const js = z.toJSONSchema(zs, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' }) as Record<string, unknown>;
      delete js.$defs;
      delete js.$schema;
      out[type] = { schema: refsToComponents(js) };
    }
  }
  return out;
}

/**
 * jsonSchemaTransform handles zod schemas at the top of body and response;
 * per-content-type schemas (binary or JSON events, binary/JSON/text coverage)
 * are converted here and put back.
 */
function transform(arg: Parameters<typeof jsonSchemaTransform>[0]): ReturnType<typeof jsonSchemaTransform> {
  const schema = { ...(arg.schema as Record<string, unknown>) };
  const body = schema.body as { content?: Content } | undefined;
  let bodyOut: unknown;
  if (body?.content !== undefined) {
    bodyOut = { content: contentToJson(body.content) };
    delete schema.body;
  }
  const response = schema.response as Record<string, { content?: Content }> | undefined;
  const responseOut: Record<string, unknown> = {};
  if (response !== undefined) {
    const rest: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(response)) {
      if (r?.content !== undefined) responseOut[status] = { content: contentToJson(r.content), description: (r as { description?: string }).description ?? 'OK' };
      else rest[status] = r;
    }
    schema.response = rest;
  }
  const out = jsonSchemaTransform({ ...arg, schema } as Parameters<typeof jsonSchemaTransform>[0]);
  const s = out.schema as Record<string, unknown>;
  if (bodyOut !== undefined) s.body = bodyOut;
  if (Object.keys(responseOut).length > 0) s.response = { ...(s.response as object), ...responseOut };
  return out;
}

export const API_DESCRIPTION = `kcov devices of Linux, OpenBSD, NetBSD and FreeBSD, emulated and served over HTTP.

Each kernel speaks one dialect and follows that kernel's kcov driver: the same state machine,
limits, buffer layout and errno. Errors are \`application/problem+json\` carrying the kernel's
errno name (\`errno\`) and number (\`code\`).

Errno → status: EINVAL, ENOTTY, EFAULT → 400; EPERM, EACCES → 403; ENOENT, EBADF, ESRCH → 404;
EBUSY, EEXIST, ENXIO, ENOBUFS → 409; EOPNOTSUPP/ENOTSUPP → 501; ENOMEM → 507. A request the
kernel would never see (bad JSON, wrong type, unknown field) is 400 EINVAL. HTTP-level limits keep
their HTTP status: 413 body too large, 415 unsupported Content-Type and 416 unsatisfiable Range
(errno EINVAL), 401 without the bearer token when KCOV_TOKEN is set (errno EACCES, with
WWW-Authenticate), 503 while the server drains for shutdown (errno EBUSY); an unknown route is
404 ENOENT. Service caps (KCOV_MAX_KERNELS, _DESCRIPTORS, _THREADS, _REMOTES) fail like an
allocation would: 507 ENOMEM. OpenBSD's kr_barrier waits are bounded (KCOV_BARRIER_TIMEOUT_MS),
then 409 ETIMEDOUT with nothing changed.

64-bit values are written as lowercase hex without padding; inputs also take padded hex, decimal
strings, or safe-integer JSON numbers. Binary bodies are little-endian 8-byte words.

Decisions where the kernels have no HTTP counterpart:
- fd numbers start at 3 and are never reused within a kernel, so a stale fd is EBADF.
- An events batch is applied atomically, in order, when its body is complete; a binary body that is
  not whole records is rejected (EINVAL) and nothing of it is stored. JSON lists apply in the order
  their keys appear.
- Coverage reads copy the area at one instant; \`?reset=true\` reads and zeroes the count (and, under
  KCOV_UNIQUE_ENABLE, the bitmap) in the same instant.
- \`GET …/coverage?wait=MS&since=N\` long-polls: it answers as soon as the count differs from N, or
  after MS (at most KCOV_MAX_WAIT) with the unchanged area.
- Syscalls are not emulated, so an ioctl itself produces no coverage (real Linux traces KCOV_RESET_TRACE's
  return path).

HTTP around it:
- Authentication: with KCOV_TOKEN set, every route but /healthz and /readyz needs \`Authorization: Bearer <token>\`
  (the \`bearer\` scheme; Swagger UI's Authorize). KCOV_DOCS_PUBLIC=true leaves /docs and /openapi.json open while
  the API stays protected.
- Compression: JSON, problem+json and text replies of at least KCOV_COMPRESS_THRESHOLD bytes (default 1024) are
  gzip- or deflate-encoded as Accept-Encoding allows; binary only with KCOV_COMPRESS=all, and a 206 part never.
  Request bodies may be \`Content-Encoding: gzip\`, \`deflate\` or \`br\`; KCOV_BODY_LIMIT applies to the decoded size
  (413 past it), another coding is 415.
- Coverage snapshots carry a weak ETag; \`If-None-Match\` with the current one answers 304 with no body (also after a
  long-poll that saw no change), never on a read with \`reset=true\`. \`If-Range\` always gets the whole area.`;

const DESCRIPTOR = {
  fd: 3, state: 'TRACE_PC', mode: 'pc', words: 65536, count: 0, capacity: 65535, owner: 100, closed: false, remote: null,
};
const KERNEL = {
  name: 'k1', boot: '3f6c2a9e-8d1b-4c57-9a0e-2b7d4e1f6a80', dialect: 'linux', ncpus: 2, descriptors: 1, threads: 1, remotes: 0,
  memory: 524288, max_entries: 268435455, min_entries: 2, config: { CONFIG_KCOV_ENABLE_COMPARISONS: true, CONFIG_KCOV_UNIQUE: true }, corpus: 'k1',
};
const MEMORY_BY = { areas: 524288, sections: 0, guards: 0, remotes: 0, threads: 384, descriptors: 224, waiters: 0, cover: 0, bodies: 0, snapshots: 0, pool: 0, other: 0 };
const K = '/v1/kernels/{kernel}';
const JSON_ = 'application/json';

/** Examples of the main bodies, by "METHOD /path" and media type (checked against the schemas by redocly lint). */
export const EXAMPLES: Record<string, Examples> = {
  'GET /v1/kernels': { response: { 200: { [JSON_]: { kernels: [KERNEL], memory: { used: 524896, limit: 1073741824, by: MEMORY_BY } } } } },
  'POST /v1/kernels': { request: { [JSON_]: { name: 'k1', dialect: 'linux', ncpus: 2 } }, response: { 201: { [JSON_]: { ...KERNEL, descriptors: 0, threads: 0, memory: 0 } } } },
  [`GET ${K}`]: { response: { 200: { [JSON_]: KERNEL } } },
  [`POST ${K}/descriptors`]: {
    request: { [JSON_]: { tid: 100 } },
    response: { 201: { [JSON_]: { ...DESCRIPTOR, state: 'DISABLED', mode: null, words: null, count: null, capacity: null, owner: null } } },
  },
  [`GET ${K}/descriptors/{fd}`]: { response: { 200: { [JSON_]: DESCRIPTOR } } },
  [`POST ${K}/descriptors/{fd}/ioctl/{cmd}`]: {
    request: { [JSON_]: { tid: 100, arg: 'pc' } },
    response: { 200: { [JSON_]: { ret: 0, descriptor: DESCRIPTOR } } },
  },
  [`POST ${K}/threads/{tid}/events`]: {
    request: { [JSON_]: { pcs: ['0xffffffff81000010', '0xffffffff81000020'], sites: ['net/ipv4/tcp.c:123'] } },
    response: { 200: { [JSON_]: { accepted: 3, dropped: 0, ignored: 0, count: 3 } } },
  },
  [`GET ${K}/descriptors/{fd}/coverage`]: {
    response: {
      200: {
        [JSON_]: { mode: 'pc', count: 3, words: 65536, pcs: ['0xffffffff81000010', '0xffffffff81000020', '0x864378d0dcd5504f'] },
        'text/plain': '0xffffffff81000010\n0xffffffff81000020\n0x864378d0dcd5504f\n',
      },
    },
  },
  [`PUT ${K}/descriptors/{fd}/coverage/count`]: { request: { [JSON_]: { count: 0 } }, response: { 200: { [JSON_]: { count: 0, words: 65536 } } } },
  [`PUT ${K}/threads/{tid}`]: {
    request: { [JSON_]: { pid: 100 } },
    response: { 201: { [JSON_]: { tid: 101, pid: 100, fd: null, handle: null, section: null, silenced: false, mode: 'DISABLED' } } },
  },
};

/** Docs routes: open without the token when KCOV_DOCS_PUBLIC is set. */
function isDocsRoute(url: string): boolean {
  return url === '/openapi.json' || url === '/docs' || url.startsWith('/docs/');
}

export interface DocsOptions {
  /** KCOV_DOCS_PUBLIC: /docs and /openapi.json answer without the bearer token; the API stays protected. */
  docsPublic?: boolean;
}

export async function registerDocs(app: FastifyInstance, opts: DocsOptions = {}): Promise<void> {
  if (opts.docsPublic === true) {
    // The auth hook lets routes whose config says public through; only the documents are marked so.
    app.addHook('onRoute', (route) => {
      if (isDocsRoute(route.url)) route.config = { ...(route.config as object), public: true } as typeof route.config;
    });
  }
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'kcovd', version: '0.1.0', description: API_DESCRIPTION },
      tags: [
        { name: 'service', description: 'health, readiness, metrics, documents' },
        { name: 'kernels', description: 'emulated kernels, one dialect each' },
        { name: 'descriptors', description: 'open kcov files and their ioctls' },
        { name: 'coverage', description: 'the area as mmap shows it' },
        { name: 'threads', description: 'tasks / LWPs and their events' },
        { name: 'remotes', description: 'remote coverage' },
        { name: 'cpus', description: 'per-CPU areas' },
      ],
    },
    transform,
    transformObject: (arg) => finishDocument(jsonSchemaTransformObject(arg) as Record<string, unknown>, { examples: EXAMPLES }) as ReturnType<typeof jsonSchemaTransformObject>,
  });
  // Swagger UI shows Authorize for the bearer scheme; the token is kept across reloads.
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', persistAuthorization: true } });
}
