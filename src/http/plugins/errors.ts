/**
 * Every failure leaves as application/problem+json with an errno and the
 * request id: engine errors with the kernel's errno and the contract's status,
 * malformed requests as 400 EINVAL, HTTP-level failures with their own status
 * (API.md "Additions"): unknown route 404 ENOENT, wrong method 405 EINVAL with
 * Allow, 413 E2BIG, 414 / 431 ENAMETOOLONG, 408 ETIMEDOUT, bad framing 400
 * EINVAL, 415 EINVAL, load shedding 503 EBUSY with Retry-After.
 *
 * Failures node's HTTP parser finds before any route runs (bad chunked
 * framing, header overflow, a header timeout) never reach Fastify: they are
 * written on the raw socket by clientErrorHandler.
 */
import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import type { Engine } from '../../engine/engine.js';
import { KcovError, type DialectName, type ErrnoName } from '../../engine/errno.js';
import { problem } from '../problem.js';

export const PROBLEM_JSON = 'application/problem+json';

function dialectOf(engine: Engine, req: FastifyRequest): DialectName {
  const name = (req.params as { kernel?: unknown } | undefined)?.kernel;
  if (typeof name === 'string') {
    const k = engine.kernels.get(name);
    if (k !== undefined) return k.dialect.name;
  }
  return engine.options.dialect;
}

export function sendProblem(
  engine: Engine,
  req: FastifyRequest,
  reply: FastifyReply,
  errno: ErrnoName,
  detail: string,
  status?: number,
): FastifyReply {
  const body = problem(errno, detail, dialectOf(engine, req), status, req.url, req.id);
  return reply.code(body.status).type(PROBLEM_JSON).send(JSON.stringify(body));
}

/**
 * A problem written straight on a socket, for failures found before a request
 * exists (node's clientError) or after Fastify let go of it. The connection is
 * closed after it: the framing of anything that follows cannot be trusted.
 */
export function writeRawProblem(socket: Socket, dialect: DialectName, bootId: string, errno: ErrnoName, detail: string, status: number, extra: Record<string, string> = {}): void {
  const id = randomUUID();
  const body = JSON.stringify(problem(errno, detail, dialect, status, undefined, id));
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\ncontent-type: ${PROBLEM_JSON}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${id}\r\nkcovd-boot: ${bootId}\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
  if (!socket.writable) return void socket.destroy();
  socket.end(`${head}\r\n${body}`);
  linger(socket);
}

const RAW_LINGER_MS = 1000;

/**
 * Read and drop what the client is still sending, then close: closing with request bytes
 * unread makes the kernel reset the connection, and a peer's RST can discard the reply
 * before the client reads it. Bounded: the socket closes when the client closes its
 * side, or after RAW_LINGER_MS.
 */
function linger(socket: Socket): void {
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), RAW_LINGER_MS);
  timer.unref();
  socket.once('end', () => socket.destroy());
  socket.once('close', () => clearTimeout(timer));
}

/** How long a closing connection is held open after its last reply. */
const LINGER_MS = 2000;

/**
 * `connection: close` on a reply sent before its request body was read whole (load
 * shedding before or during the body, a body too large, no Host, draining): node destroys such a socket as soon as the reply is written, and
 * with request bytes unread the kernel then resets the connection; the reset discarded
 * the reply before a client that was still writing could read it (a refused 8 MiB batch
 * looked like a dropped connection). Here the socket half-closes after the reply, stops
 * reading (a refused body is neither kept nor read: its bytes would be garbage for the
 * GC, and sixteen clients blasting refused uploads must not fill the heap with it) and
 * closes after LINGER_MS. A client that reads while it writes has the reply by then.
 */
export function closeAfter(reply: FastifyReply): FastifyReply {
  reply.header('connection', 'close');
  const socket = reply.raw.socket as (Socket & { destroySoon?: () => void; _paused?: boolean; _handle?: { readStop?: () => number } | null }) | null;
  if (socket !== null && !reply.request.raw.complete) {
    // node's resOnFinish calls destroySoon() after the last reply of a closing connection.
    socket.destroySoon = () => {
      socket.end();
      // node's HTTP parser reads the handle itself: stop it there (socket.pause() would not), and
      // keep node from starting it again when it dumps the unread request (_http_incoming readStart
      // skips a socket marked _paused; _read would call readStart).
      socket._paused = true;
      socket._read = () => {};
      socket._handle?.readStop?.();
      // Not unref'd: the server's close waits for this socket, which no longer reads to see its peer go.
      const timer = setTimeout(() => socket.destroy(), LINGER_MS);
      socket.once('close', () => clearTimeout(timer));
    };
  }
  return reply;
}

/** What node's parser errors mean on the wire. */
function clientErrorProblem(err: NodeJS.ErrnoException): [number, ErrnoName, string] {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, 'ETIMEDOUT', 'the request headers did not arrive in time (KCOV_HEADERS_TIMEOUT)'];
    case 'HPE_HEADER_OVERFLOW':
      return [431, 'ENAMETOOLONG', 'the request line and headers are larger than the server accepts'];
    case 'HPE_INVALID_CHUNK_SIZE':
      return [400, 'EINVAL', 'malformed chunked transfer encoding'];
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return [400, 'EINVAL', 'Content-Length together with Transfer-Encoding: chunked'];
    case 'HPE_INVALID_CONTENT_LENGTH':
      return [400, 'EINVAL', 'malformed Content-Length'];
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return [400, 'EINVAL', 'malformed Transfer-Encoding'];
    default:
      return [400, 'EINVAL', `malformed HTTP request (${err.code ?? 'parse error'})`];
  }
}

/** Fastify's clientErrorHandler: the problem on the raw socket, then close. */
export function clientErrorHandler(dialect: DialectName, bootId: string): NonNullable<FastifyServerOptions['clientErrorHandler']> {
  return (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, errno, detail] = clientErrorProblem(err);
    const res = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (res === undefined || res === null || (!res.headersSent && (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || !res.req.complete))) {
      // No reply under way, or the error is in the request that has none yet (its body, or its time ran out).
      return writeRawProblem(socket, dialect, bootId, errno, detail, status);
    }
    // Garbage after a request whose reply is under way (pipelining, or a body longer
    // than its Content-Length): that reply first, then the problem, then close.
    if (res.writableFinished) return writeRawProblem(socket, dialect, bootId, errno, detail, status);
    res.once('finish', () => writeRawProblem(socket, dialect, bootId, errno, detail, status));
    res.once('close', () => { if (!res.writableFinished) socket.destroy(); });
  };
}

/** frameworkErrors: a URL Fastify cannot route (bad escape, parameter over maxParamLength). */
export function frameworkErrors(engine: Engine, bootId: string): NonNullable<FastifyServerOptions['frameworkErrors']> {
  return (err, req, reply) => {
    // The onRequest hooks never run for these.
    reply.header('x-request-id', req.id).header('kcovd-boot', bootId);
    if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      return sendProblem(engine, req, reply, 'ENAMETOOLONG', 'a path parameter is longer than 100 characters', 414);
    }
    return sendProblem(engine, req, reply, 'EINVAL', err.code === 'FST_ERR_BAD_URL' ? 'the URL is not validly escaped' : err.message, 400);
  };
}

function validationDetail(err: FastifyError): string {
  const issues = (err.validation ?? []) as Array<{ instancePath?: string; message?: string; params?: { issue?: { path?: unknown[] } } }>;
  const where = err.validationContext ?? 'request';
  const parts = issues.slice(0, 5).map((i) => {
    const path = i.instancePath !== undefined && i.instancePath !== '' ? i.instancePath : '';
    return `${where}${path}: ${i.message ?? 'invalid'}`;
  });
  return parts.length > 0 ? parts.join('; ') : err.message.slice(0, 1000);
}

/** A route pattern (`/v1/kernels/:kernel`) as a regular expression of the paths it serves. */
function patternRe(url: string): RegExp {
  const src = url.split('/').map((seg) => {
    if (seg.startsWith(':')) return '[^/]+';
    if (seg === '*') return '.*';
    return seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }).join('/');
  return new RegExp(`^${src}/?$`);
}

export function registerErrors(app: FastifyInstance, engine: Engine): void {
  // Methods of every route pattern, for 405 and its Allow header.
  const patterns = new Map<string, { re: RegExp; methods: Set<string> }>();
  app.addHook('onRoute', (route) => {
    let p = patterns.get(route.url);
    if (p === undefined) {
      p = { re: patternRe(route.url), methods: new Set() };
      patterns.set(route.url, p);
    }
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) p.methods.add(m);
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof KcovError) return sendProblem(engine, req, reply, err.errno, err.message);
    if (hasZodFastifySchemaValidationErrors(err) || err.validation !== undefined) {
      return sendProblem(engine, req, reply, 'EINVAL', validationDetail(err));
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(engine, req, reply, 'E2BIG', `request body is larger than the limit of ${app.initialConfig.bodyLimit} bytes (KCOV_BODY_LIMIT)`, 413);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendProblem(engine, req, reply, 'EINVAL', `unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}`, 415);
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendProblem(engine, req, reply, 'EINVAL', 'Content-Length does not match the body', 400);
      case 'KCOVD_E2BIG':
        // Mid-body (limits.ts Counted): the rest is not read, the reply is (closeAfter).
        closeAfter(reply);
        return sendProblem(engine, req, reply, 'E2BIG', err.message, 413);
      case 'KCOVD_EBUSY':
        // limits.ts: the in-flight budget ran out mid-body; the rest of it is not read.
        closeAfter(reply.header('retry-after', '1'));
        return sendProblem(engine, req, reply, 'EBUSY', err.message, 503);
    }
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      return sendProblem(engine, req, reply, 'EINVAL', err.message.slice(0, 1000), status === 404 ? 400 : status);
    }
    req.log.error({ err }, 'unexpected error');
    return sendProblem(engine, req, reply, 'EFAULT', 'internal error', 500);
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allow = new Set<string>();
    for (const p of patterns.values()) if (p.re.test(path)) for (const m of p.methods) allow.add(m);
    if (allow.size > 0) {
      const list = [...allow].sort().join(', ');
      reply.header('allow', list);
      return sendProblem(engine, req, reply, 'EINVAL', `${req.method} is not a method of ${path}; allowed: ${list}`, 405);
    }
    sendProblem(engine, req, reply, 'ENOENT', `no route ${req.method} ${path}`, 404);
  });
}
