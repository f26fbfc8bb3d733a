/**
 * Request bodies in flight: one global byte budget (KCOV_INFLIGHT_LIMIT), also
 * charged to the engine's MemoryBudget (KCOV_MEMORY_LIMIT) as "request bodies
 * in flight", so a crowd of slow uploads cannot take memory the areas were
 * promised. A body with a Content-Length is reserved whole before a byte of it
 * is read; a chunked body is charged chunk by chunk as it arrives, and so is a
 * gzip, deflate or br body, by its decoded bytes as they are inflated. Past either
 * budget the request is 503 EBUSY with Retry-After and the connection closes
 * (the rest of a refused body is not read: the socket stops reading and closes 2 s
 * after the reply, so the client reads the reply, errors.ts closeAfter). The charge is released exactly once, when the response is
 * over: sent, failed, aborted or timed out ('close' of the ServerResponse,
 * which node emits on every one of those paths).
 *
 * Also here: HTTP/1.1 requests without Host are 400 EINVAL (node's own check
 * answers with a bare 400, so the server is built with requireHostHeader off).
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Engine } from '../../engine/engine.js';
import { KcovError } from '../../engine/errno.js';
import { encodedLength } from './compress.js';
import { closeAfter, sendProblem } from './errors.js';

export const INFLIGHT_WHAT = 'request bodies in flight';
/** Seconds a shed client is told to wait. */
export const RETRY_AFTER = '1';

/** Error a body stream fails with when the budget runs out mid-body; errors.ts answers 503. */
export class Busy extends Error {
  readonly code = 'KCOVD_EBUSY';
  readonly statusCode = 503;
}

/** A chunked JSON body past KCOV_JSON_LIMIT; errors.ts answers 413 E2BIG. */
export class TooBig extends Error {
  readonly code = 'KCOVD_E2BIG';
  readonly statusCode = 413;
}

/**
 * What a JSON body costs per byte once parsed and validated: JSON.parse makes
 * 22 bytes of heap per byte of `{},{},…` (measured), and validation adds its own tree.
 * JSON bodies are charged at this multiple of their length.
 */
export const JSON_COST = 24;
/** Bodies whose cost is under this are not charged. */
export const SMALL_BODY = 64 * 1024;

/**
 * What a decoder itself holds while a Content-Encoding body inflates, charged up front:
 * brotli's ring buffer is as large as the stream's window, up to 16 MiB (node does not
 * enable large windows); zlib's inflate state is a 32 KiB window and ~7 KiB of tables.
 */
export const DECODER_COST: Readonly<Record<string, number>> = { br: 16 * 1024 * 1024, gzip: 64 * 1024, 'x-gzip': 64 * 1024, deflate: 64 * 1024 };

function isJson(contentType: string | undefined): boolean {
  return contentType !== undefined && /^\s*application\/json\s*(;|$)/i.test(contentType);
}

/** The global in-flight account. */
export class InFlight {
  /** [E] bytes of request bodies reserved or received and not yet released. */
  used = 0;
  /** [E] requests turned away because a budget was full (reported in docs/limits.md, /metrics reads it). */
  shed = 0;

  constructor(
    private readonly engine: Engine,
    /** [I] KCOV_INFLIGHT_LIMIT. */
    readonly limit: number,
  ) {}

  /** Take `bytes` from both budgets, or neither; a reason when refused. */
  take(bytes: number): string | null {
    if (bytes > this.limit - this.used) {
      this.shed++;
      return `request bodies in flight would exceed KCOV_INFLIGHT_LIMIT (${this.used} + ${bytes} of ${this.limit} bytes)`;
    }
    try {
      this.engine.budget.charge(bytes, INFLIGHT_WHAT, 'bodies');
    } catch (e) {
      if (!(e instanceof KcovError)) throw e;
      this.shed++;
      return e.message;
    }
    this.used += bytes;
    return null;
  }

  give(bytes: number): void {
    this.used -= bytes;
    this.engine.budget.release(bytes, 'bodies');
  }
}

export const SNAPSHOT_WHAT = 'coverage snapshots in flight';
/**
 * Smaller snapshots are not charged: like the small JSON and text replies encoded in
 * one piece, their cost is part of what any open connection costs, and a budget full
 * of areas must not stop every read.
 */
export const SNAPSHOT_CHARGE_MIN = 64 * 1024;

/** Charge a snapshot copy to the memory budget; the refusal's reason when it does not fit. */
export function chargeSnapshot(engine: Engine, bytes: number): string | null {
  try {
    engine.budget.charge(bytes, SNAPSHOT_WHAT, 'snapshots');
    return null;
  } catch (e) {
    if (!(e instanceof KcovError)) throw e;
    return e.message;
  }
}

/** 503 EBUSY with Retry-After: the server sheds this request; the same request later may pass. */
export function sendBusy(engine: Engine, req: FastifyRequest, reply: FastifyReply, detail: string): FastifyReply {
  reply.header('retry-after', RETRY_AFTER);
  return sendProblem(engine, req, reply, 'EBUSY', detail, 503);
}

/** A chunked body, charged as its chunks pass. */
class Counted extends Transform {
  charged = 0;
  received = 0;
  constructor(private readonly account: InFlight, private readonly factor: number, private readonly limit: number) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.received += chunk.length;
    if (this.received > this.limit) return cb(new TooBig(`the JSON body is larger than KCOV_JSON_LIMIT (${this.limit} bytes)`));
    const cost = chunk.length * this.factor;
    const why = this.account.take(cost);
    if (why !== null) return cb(new Busy(why));
    this.charged += cost;
    cb(null, chunk);
  }
}

function busy(engine: Engine, req: FastifyRequest, reply: FastifyReply, detail: string): FastifyReply {
  // The body is not kept: the connection cannot carry another request after it.
  closeAfter(reply.header('retry-after', RETRY_AFTER));
  return sendProblem(engine, req, reply, 'EBUSY', detail, 503);
}

/** node http.Server options of every listener (TCP and KCOV_SOCKET): the timeouts as the README states them. */
export function serverOptions(config: { requestTimeout: number; headersTimeout: number; keepAliveTimeout: number }) {
  // node refuses a header bound longer than the whole-request bound.
  const headersTimeout = config.requestTimeout === 0 ? config.headersTimeout : Math.min(config.requestTimeout, config.headersTimeout);
  return {
    requestTimeout: config.requestTimeout,
    headersTimeout,
    keepAliveTimeout: config.keepAliveTimeout,
    // node checks both timeouts on this tick (default 30 s, which made a 5 s bound a 35 s one).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(headersTimeout / 4))),
    // Checked in preParsing, to answer problem+json instead of node's bare 400.
    requireHostHeader: false,
  };
}

export function registerLimits(app: FastifyInstance, engine: Engine, opts: { inflightLimit: number; bodyLimit: number; jsonLimit: number }): InFlight {
  const account = new InFlight(engine, opts.inflightLimit);
  app.addHook('preParsing', (req, reply, payload, done) => {
    const raw = req.raw;
    if (raw.headers.host === undefined && raw.httpVersionMajor === 1 && raw.httpVersionMinor >= 1) {
      closeAfter(reply);
      sendProblem(engine, req, reply, 'EINVAL', 'an HTTP/1.1 request needs a Host header (RFC 9112 section 3.2)', 400);
      return;
    }
    const cl = raw.headers['content-length'];
    // A Content-Encoding body reaches this hook decoded (compress.ts runs first and drops its
    // Content-Length, which counted the encoded bytes): it is charged as its decoded chunks pass.
    const chunked = raw.headers['transfer-encoding'] !== undefined || encodedLength(req) !== undefined;
    if (cl === undefined && !chunked) return done(null, payload);
    let charged = 0;
    const coding = raw.headers['content-encoding'];
    const decoder = coding === undefined ? 0 : DECODER_COST[String(coding).trim().toLowerCase()] ?? 0;
    if (decoder > 0) {
      const why = account.take(decoder);
      if (why !== null) {
        busy(engine, req, reply, why);
        return;
      }
      charged = decoder;
    }
    const json = isJson(raw.headers['content-type']);
    const factor = json ? JSON_COST : 1;
    if (!chunked) {
      const n = Number(cl);
      // Past KCOV_BODY_LIMIT the parser answers 413 without reading; nothing to reserve.
      if (!(n > 0) || n > opts.bodyLimit) return done(null, payload);
      if (json && n > opts.jsonLimit) {
        closeAfter(reply);
        sendProblem(engine, req, reply, 'E2BIG', `the JSON body is larger than KCOV_JSON_LIMIT (${opts.jsonLimit} bytes); send large batches as application/octet-stream`, 413);
        return;
      }
      // Small bodies cost what any connection costs; they are not accounted (nor slowed by it).
      if (n * factor < SMALL_BODY) return done(null, payload);
      const why = account.take(n * factor);
      if (why !== null) {
        busy(engine, req, reply, why);
        return;
      }
      charged = n * factor;
    }
    let counted: Counted | undefined;
    let released = false;
    reply.raw.once('close', () => {
      if (released) return;
      released = true;
      account.give(charged + (counted?.charged ?? 0));
    });
    if (!chunked) return done(null, payload);
    counted = new Counted(account, factor, json ? opts.jsonLimit : Infinity);
    // An aborted request errors the raw stream; pass that on while the parser reads, and
    // swallow it once the parser is done (it stops listening, and node only emits errors
    // to a stream that has listeners: this one always has one).
    counted.on('error', () => {});
    payload.on('error', (err) => {
      if (!counted!.destroyed) counted!.destroy(err);
    });
    done(null, payload.pipe(counted));
  });
  return account;
}
