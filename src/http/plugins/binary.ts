/**
 * application/octet-stream bodies, read for the events routes.
 *
 * A body with a Content-Length is copied chunk by chunk, as it arrives (while
 * the socket's bytes are still in cache), into a staging buffer from a small
 * pool; the route then copies whole records into the area with one
 * TypedArray.set and gives the buffer back. Nothing of a socket chunk
 * outlives its 'data' event, so large uploads do not push socket buffers into
 * the old generation (that GC was a fifth of the time of 512 KiB uploads).
 * Chunked bodies (no Content-Length) keep their chunks, as before.
 *
 * Either way the area is written only when the body is complete and
 * well-formed, synchronously, in one step: a malformed or cut-off body leaves
 * it untouched, and a request for the same area that interleaves with the
 * upload sees the batch entirely or not at all.
 */
import type { FastifyInstance } from 'fastify';

export interface ChunkedBody {
  readonly chunks: Buffer[];
  readonly length: number;
  /** Give pooled memory back; the chunks must not be used afterwards. Idempotent. */
  release(): void;
}

export function isChunkedBody(body: unknown): body is ChunkedBody {
  return typeof body === 'object' && body !== null && Array.isArray((body as ChunkedBody).chunks);
}

/**
 * Staging buffers by size class (powers of two from 64 KiB). Bounded: at most
 * POOL_BYTES are kept idle; larger bodies than POOL_MAX_BODY get a buffer of
 * their own that the GC reclaims.
 */
const MIN_CLASS = 64 * 1024;
const POOL_MAX_BODY = 4 * 1024 * 1024;
const POOL_BYTES = 16 * 1024 * 1024;
const pool = new Map<number, Buffer[]>();
let pooledBytes = 0;

function sizeClass(n: number): number {
  return n <= MIN_CLASS ? MIN_CLASS : 2 ** Math.ceil(Math.log2(n));
}

function acquire(n: number): Buffer {
  if (n > POOL_MAX_BODY) return Buffer.allocUnsafeSlow(n);
  const c = sizeClass(n);
  const free = pool.get(c);
  const b = free?.pop();
  if (b !== undefined) {
    pooledBytes -= c;
    return b;
  }
  return Buffer.allocUnsafeSlow(c);
}

function giveBack(b: Buffer): void {
  const c = b.length;
  if (c > POOL_MAX_BODY || c !== sizeClass(c) || pooledBytes + c > POOL_BYTES) return;
  let free = pool.get(c);
  if (free === undefined) pool.set(c, (free = []));
  free.push(b);
  pooledBytes += c;
}

const noRelease = (): void => {};

function tooLarge(): Error {
  return Object.assign(new Error('body too large'), { code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 });
}

function badLength(): Error {
  return Object.assign(new Error('bad length'), { code: 'FST_ERR_CTP_INVALID_CONTENT_LENGTH', statusCode: 400 });
}

export function registerBinaryBody(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser('application/octet-stream', (req, payload, done) => {
    const header = req.headers['content-length'];
    const declared = header === undefined ? NaN : Number(header);
    if (Number.isFinite(declared) && declared > bodyLimit) {
      done(tooLarge(), undefined);
      payload.resume();
      return;
    }
    let failed = false;
    let length = 0;
    if (Number.isSafeInteger(declared) && declared > 0) {
      // Known length: copy each chunk into staging as it arrives.
      let staging: Buffer | null = acquire(declared);
      const release = () => {
        if (staging !== null) giveBack(staging);
        staging = null;
      };
      payload.on('data', (chunk: Buffer) => {
        if (failed) return;
        if (length + chunk.length > declared) {
          // Only a stream that ignores Content-Length can do this (the HTTP parser cannot).
          failed = true;
          release();
          done(badLength(), undefined);
          return;
        }
        staging!.set(chunk, length);
        length += chunk.length;
      });
      payload.on('end', () => {
        if (failed) return;
        if (length !== declared) {
          failed = true;
          release();
          done(badLength(), undefined);
          return;
        }
        const body: ChunkedBody = { chunks: [staging!.subarray(0, length)], length, release };
        done(null, body);
      });
      payload.on('error', (err) => {
        if (failed) return;
        failed = true;
        release();
        done(err, undefined);
      });
      return;
    }
    const chunks: Buffer[] = [];
    payload.on('data', (chunk: Buffer) => {
      if (failed) return;
      length += chunk.length;
      if (length > bodyLimit) {
        failed = true;
        done(tooLarge(), undefined);
        return;
      }
      chunks.push(chunk);
    });
    payload.on('end', () => {
      if (failed) return;
      if (Number.isFinite(declared) && declared !== length) {
        failed = true;
        done(badLength(), undefined);
        return;
      }
      done(null, { chunks, length, release: noRelease } satisfies ChunkedBody);
    });
    payload.on('error', (err) => {
      if (failed) return;
      failed = true;
      done(err, undefined);
    });
  });
}
