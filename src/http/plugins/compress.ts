/**
 * Compression both ways.
 *
 * Replies (@fastify/compress): JSON, problem+json and text are gzip- or
 * deflate-encoded when the request's Accept-Encoding allows it and the body is
 * at least KCOV_COMPRESS_THRESHOLD bytes. Binary (application/octet-stream)
 * only with KCOV_COMPRESS=all: a fuzzer polling the raw area on the same host
 * pays CPU for nothing, while one across a network saves most of the bytes
 * (the area past the count is zeros). Partial content (206) is never encoded:
 * its Content-Range counts bytes of the area. `x-no-compression` opts a request out.
 * Brotli is not offered: at its default quality it costs ten times gzip's CPU
 * on a large snapshot.
 *
 * Request bodies: `Content-Encoding: gzip` (x-gzip), `deflate` or `br` bodies
 * are decoded before the body parsers see them, and the body limit
 * (KCOV_BODY_LIMIT) applies to the decoded bytes: a small gzip bomb is cut off
 * at the limit with 413 and never held in memory. Another coding is 415; a
 * body that does not decode is 400 EINVAL.
 */
import compress from '@fastify/compress';
import type { FastifyInstance } from 'fastify';
import { Transform, type Readable } from 'node:stream';
import { constants, createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

export type CompressMode = 'off' | 'text' | 'all';

export interface CompressOptions {
  /** KCOV_COMPRESS: off, text (JSON and text, the default) or all (binary too). */
  mode: CompressMode;
  /** KCOV_COMPRESS_THRESHOLD: smallest reply body that is compressed, in bytes. */
  threshold: number;
  /** KCOV_BODY_LIMIT: largest request body, counted after decoding. */
  bodyLimit: number;
}

const TEXT_TYPES = /^(?:text\/(?!event-stream)|application\/(?:[\w.+-]+\+)?json)/i;
const BINARY_TYPES = /^application\/octet-stream/i;

const ENCODED_LENGTH = Symbol('kcovd.encodedLength');

/** Content-Length of an encoded request body as it came (its decoded size is what the parsers count). */
export function encodedLength(req: object): number | undefined {
  return (req as Record<symbol, number | undefined>)[ENCODED_LENGTH];
}

function httpError(message: string, statusCode: number, code: string): Error {
  return Object.assign(new Error(message), { statusCode, code });
}

function decoderFor(coding: string): Transform | null {
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

/**
 * The request stream decoded, cut off with 413 past `limit` decoded bytes. The raw
 * stream is never destroyed (the reply goes out on its socket); after an error the
 * rest of it is read and dropped.
 */
function decoded(raw: Readable, decoder: Transform, limit: number, declared: number): Transform {
  let encoded = 0;
  let size = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.length;
      if (size > limit) cb(httpError(`request body is larger than the limit of ${limit} bytes once decoded`, 413, 'FST_ERR_CTP_BODY_TOO_LARGE'));
      else cb(null, chunk);
    },
    flush(cb) {
      if (Number.isFinite(declared) && declared !== encoded) cb(httpError('Content-Length does not match the body', 400, 'FST_ERR_CTP_INVALID_CONTENT_LENGTH'));
      else cb();
    },
  });
  const stop = () => {
    raw.unpipe(decoder);
    decoder.destroy();
    raw.resume();
  };
  raw.on('data', (c: Buffer) => {
    encoded += c.length;
  });
  decoder.on('error', (err) => {
    out.destroy(httpError(`the body does not decode as its Content-Encoding says: ${err.message}`, 400, 'KCOVD_BAD_ENCODING'));
  });
  out.on('error', stop);
  raw.on('error', (err) => out.destroy(err));
  raw.pipe(decoder).pipe(out);
  return out;
}

export async function registerCompression(app: FastifyInstance, opts: CompressOptions): Promise<void> {
  app.addHook('preParsing', (req, _reply, payload, done) => {
    const header = req.headers['content-encoding'];
    if (header === undefined) return done(null, payload);
    const coding = String(header).trim().toLowerCase();
    if (coding === 'identity' || coding === '') return done(null, payload);
    const decoder = decoderFor(coding);
    if (decoder === null) {
      return done(httpError(`unsupported Content-Encoding ${JSON.stringify(header)}: gzip, deflate, br or identity`, 415, 'KCOVD_UNSUPPORTED_ENCODING'));
    }
    // The parsers count (and limit) the decoded bytes; Content-Length counted the encoded ones.
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared)) (req as unknown as Record<symbol, number>)[ENCODED_LENGTH] = declared;
    delete req.raw.headers['content-length'];
    done(null, decoded(payload, decoder, opts.bodyLimit, declared));
  });

  if (opts.mode === 'off') return;
  // Events replies are a few dozen bytes: spare the hot route the per-reply check.
  app.addHook('onRoute', (route) => {
    if (route.url.endsWith('/events') && route.compress === undefined) route.compress = false;
  });
  const binary = opts.mode === 'all';
  if (!binary) {
    // mime-db calls octet-stream compressible and customTypes can only add to it; the
    // plugin's own opt-out (x-no-compression) is set on the request instead. This hook
    // runs before the plugin's, which is per route.
    app.addHook('onSend', (req, reply, payload, done) => {
      const type = reply.getHeader('content-type');
      if (typeof type === 'string' && BINARY_TYPES.test(type)) req.headers['x-no-compression'] = 'binary';
      done(null, payload);
    });
  }
  await app.register(compress, {
    global: true,
    globalDecompression: false,
    encodings: ['gzip', 'deflate'],
    threshold: opts.threshold,
    // Level 1: as small as level 6 on hex PC lists, at a third of the CPU.
    zlibOptions: { level: constants.Z_BEST_SPEED },
    customTypes: (type: string) => TEXT_TYPES.test(type) || (binary && BINARY_TYPES.test(type)),
  });
}
