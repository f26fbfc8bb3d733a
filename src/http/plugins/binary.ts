/**
 * application/octet-stream bodies are kept as the chunks they arrived in:
 * no concatenation. The events route copies them into the area with
 * TypedArray.set once the body is complete, so a malformed body (not whole
 * records) leaves the area untouched and a batch applies atomically.
 */
import type { FastifyInstance } from 'fastify';

export interface ChunkedBody {
  readonly chunks: Buffer[];
  readonly length: number;
}

export function isChunkedBody(body: unknown): body is ChunkedBody {
  return typeof body === 'object' && body !== null && Array.isArray((body as ChunkedBody).chunks);
}

export function registerBinaryBody(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser('application/octet-stream', (req, payload, done) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > bodyLimit) {
      const err = Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
      done(err, undefined);
      payload.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    let failed = false;
    // A refused body's request lives on while node reads and drops the rest of it (past
    // KCOV_BODY_LIMIT that is up to the limit's worth of chunks): its listeners must not keep them.
    const fail = (): void => {
      failed = true;
      chunks.length = 0;
    };
    payload.on('data', (chunk: Buffer) => {
      if (failed) return;
      length += chunk.length;
      if (length > bodyLimit) {
        fail();
        done(Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }), undefined);
        return;
      }
      chunks.push(chunk);
    });
    payload.on('end', () => {
      if (failed) return;
      if (Number.isFinite(declared) && declared !== length) {
        fail();
        done(Object.assign(new Error('bad length'), { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 }), undefined);
        return;
      }
      done(null, { chunks, length } satisfies ChunkedBody);
    });
    payload.on('error', (err) => {
      if (failed) return;
      fail();
      done(err, undefined);
    });
  });
}

/**
 * Validation rebuilds a JSON body in schema order; events apply in the order the
 * client wrote the lists, so that order is noted before validation runs.
 */
const KEY_ORDER = Symbol('kcovd.keyOrder');

export function noteKeyOrder(req: { body: unknown }, _reply: unknown, done: () => void): void {
  const body = req.body;
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && !isChunkedBody(body)) {
    (req as unknown as Record<symbol, string[]>)[KEY_ORDER] = Object.keys(body);
  }
  done();
}

/** Note on a validated body the key order of the body it came from (the validator does it: no hook). */
export function noteBodyKeyOrder(value: unknown, raw: unknown): void {
  if (typeof value === 'object' && value !== null && typeof raw === 'object' && raw !== null && !Array.isArray(raw) && !isChunkedBody(raw)) {
    (value as Record<symbol, string[]>)[KEY_ORDER] = Object.keys(raw);
  }
}

export function keyOrder(req: { body?: unknown }): string[] | undefined {
  const body = req.body;
  const onBody = typeof body === 'object' && body !== null ? (body as Record<symbol, string[] | undefined>)[KEY_ORDER] : undefined;
  return onBody ?? (req as Record<symbol, string[] | undefined>)[KEY_ORDER];
}
