/**
 * Hot routes (events, coverage, count, ioctl) skip zod on the requests that
 * make up nearly all of their traffic, and answer with pre-encoded JSON.
 *
 * The zod schemas stay the source of truth: a fast check only ever accepts a
 * subset of what its schema accepts and yields the value zod would yield;
 * anything else (odd spellings, errors) goes to the zod validator, so error
 * replies are exactly zod's. test/http/binary-ingest.test.ts ("fast checks give way to zod")
 * holds the fast checks against their schemas.
 */
import type { FastifyReply, FastifySchemaCompiler } from 'fastify';
import { boundedValidatorCompiler } from './validate.js';
import type { TraceMode } from '../engine/area.js';
import { fail } from '../engine/errno.js';
import { binarySegment, decodeJsonEvents, type Segment } from '../engine/events.js';
import { isChunkedBody, keyOrder, noteBodyKeyOrder } from './plugins/binary.js';
import { isSegmentsBody } from './plugins/json-body.js';
import { KERNEL_NAME_RE } from '../wire/names.js';

type HttpPart = 'body' | 'querystring' | 'params' | 'headers';
/** A value when the input is in the easy subset, else undefined (ask zod). */
export type FastCheck = (data: unknown) => unknown;

const zodCompiler = boundedValidatorCompiler as unknown as (route: Parameters<FastifySchemaCompiler<unknown>>[0]) => (data: unknown) => ReturnType<ReturnType<FastifySchemaCompiler<unknown>>>;

/**
 * A route-level validatorCompiler: the fast check of a part first, the zod
 * validator of the route's own schema when the check declines.
 */
export function fastValidator(checks: Partial<Record<HttpPart, FastCheck>>, opts: { bodyKeyOrder?: boolean } = {}): FastifySchemaCompiler<unknown> {
  return (route) => {
    const zod = zodCompiler(route);
    // Events apply in the order the client wrote the lists; zod rebuilds a body in schema order.
    const slow = opts.bodyKeyOrder === true && route.httpPart === 'body'
      ? (data: unknown) => {
        const r = zod(data) as { value?: unknown };
        noteBodyKeyOrder(r.value, data);
        return r as ReturnType<typeof zod>;
      }
      : zod;
    const fast = checks[route.httpPart as HttpPart];
    if (fast === undefined) return slow;
    return (data: unknown) => {
      const value = fast(data);
      return value === undefined ? slow(data) : { value };
    };
  };
}

/** Plain decimal, no sign, no leading zeros: the one spelling where Number(s) is all z.coerce does. */
const FD_RE = /^(?:0|[1-9][0-9]{0,14})$/;
const TID_RE = /^[1-9][0-9]{0,9}$/;

/** FdParams. */
export function fdParams(data: unknown): unknown {
  const p = data as { kernel?: unknown; fd?: unknown };
  const { kernel, fd } = p;
  if (typeof kernel !== 'string' || typeof fd !== 'string' || !KERNEL_NAME_RE.test(kernel) || !FD_RE.test(fd)) return undefined;
  const n = Number(fd);
  return Number.isSafeInteger(n) ? { kernel, fd: n } : undefined;
}

/** TidParams. */
export function tidParams(data: unknown): unknown {
  const { kernel, tid } = data as { kernel?: unknown; tid?: unknown };
  if (typeof kernel !== 'string' || typeof tid !== 'string' || !KERNEL_NAME_RE.test(kernel) || !TID_RE.test(tid)) return undefined;
  const n = Number(tid);
  return n <= 0x7fffffff ? { kernel, tid: n } : undefined;
}

/** IoctlParams (kernel is any string there; cmd 1..64 characters). */
export function ioctlParams(data: unknown): unknown {
  const { kernel, fd, cmd } = data as { kernel?: unknown; fd?: unknown; cmd?: unknown };
  if (typeof kernel !== 'string' || typeof fd !== 'string' || typeof cmd !== 'string') return undefined;
  if (cmd.length < 1 || cmd.length > 64 || !FD_RE.test(fd)) return undefined;
  const n = Number(fd);
  return Number.isSafeInteger(n) ? { kernel, fd: n, cmd } : undefined;
}

function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/** EventsQuery: no query, or kind=pc|cmp alone. */
export function eventsQuery(data: unknown): unknown {
  const q = data as { kind?: unknown };
  const n = keyCount(q);
  if (n === 0) return { kind: 'pc' };
  if (n === 1 && (q.kind === 'pc' || q.kind === 'cmp')) return { kind: q.kind };
  return undefined;
}

const RESET = new Set(['true', 'false', '1', '0']);
const FORMAT = new Set(['binary', 'json', 'text']);
const MODE = new Set(['pc', 'cmp']);

/** CoverageQuery: reset, format and mode, each from its enum, nothing else. */
export function coverageQuery(data: unknown): unknown {
  const q = data as Record<string, unknown>;
  const out: { reset?: string; new?: string; format?: string; mode?: string } = {};
  for (const k in q) {
    const v = q[k];
    if (k === 'reset' && typeof v === 'string' && RESET.has(v)) out.reset = v;
    else if (k === 'new' && typeof v === 'string' && RESET.has(v)) out.new = v;
    else if (k === 'format' && typeof v === 'string' && FORMAT.has(v)) out.format = v;
    else if (k === 'mode' && typeof v === 'string' && MODE.has(v)) out.mode = v;
    else return undefined;
  }
  return out;
}

/** CountBody: {"count": safe non-negative integer}. */
export function countBody(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const b = data as { count?: unknown };
  const c = b.count;
  if (keyCount(b) !== 1 || typeof c !== 'number' || !Number.isSafeInteger(c) || c < 0) return undefined;
  return { count: c };
}

/** IoctlBody with a tid and an arg that is absent, a number, a string or null (structs go to zod). */
export function ioctlBody(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const b = data as { tid?: unknown; arg?: unknown };
  const n = keyCount(b);
  const { tid, arg } = b;
  if (typeof tid !== 'number' || !Number.isInteger(tid) || tid < 1 || tid > 0x7fffffff) return undefined;
  if (n === 1) return { tid };
  if (n !== 2 || !('arg' in b)) return undefined;
  if (arg === null || typeof arg === 'string' || (typeof arg === 'number' && Number.isFinite(arg))) return { tid, arg };
  return undefined;
}

/** A binary events body passes as it is (its schema is z.any()), and so does one the JSON scanner decoded; other JSON bodies go to zod. */
export function binaryBody(data: unknown): unknown {
  return isChunkedBody(data) || isSegmentsBody(data) ? data : undefined;
}

/** U64's string branch. */
const U64_RE = /^(0[xX][0-9a-fA-F]+|[0-9]+)$/;

/**
 * An events body: binary, or JSON the scanner decoded (plugins/json-body.ts), as it is; JSON {"pcs": [U64, …]} alone (the batch a
 * client sends most), each value a safe non-negative integer or U64's string.
 * Other lists and anything odd go to zod.
 */
export function eventsBody(data: unknown): unknown {
  if (isChunkedBody(data) || isSegmentsBody(data)) return data;
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const b = data as { pcs?: unknown };
  const pcs = b.pcs;
  if (keyCount(b) !== 1 || !Array.isArray(pcs)) return undefined;
  for (let i = 0; i < pcs.length; i++) {
    const v: unknown = pcs[i];
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v) || v < 0) return undefined;
    } else if (typeof v !== 'string' || !U64_RE.test(v)) {
      return undefined;
    }
  }
  return { pcs };
}

/**
 * A validated events body as the segments the engine applies: binary chunks as they
 * arrived, a JSON batch the scanner decoded, or one zod let through (decoded here, in the
 * order the client wrote its lists). The threads and remotes events routes share it.
 */
export function eventSegments(req: { body?: unknown }, kind: TraceMode): Segment[] {
  const body = req.body;
  if (isChunkedBody(body)) return [binarySegment(kind, body.chunks, body.length)];
  if (isSegmentsBody(body)) return body.segments;
  if (typeof body !== 'object' || body === null) fail('EINVAL', 'events body must be a JSON object or application/octet-stream');
  return decodeJsonEvents(body as Record<string, unknown>, keyOrder(req));
}

/** Send JSON already encoded: no serializer, no schema walk. */
export function sendJson(reply: FastifyReply, json: string, status = 200): FastifyReply {
  if (status !== 200) reply.code(status);
  return reply.header('content-type', 'application/json; charset=utf-8').send(json);
}

/** The events reply, {"accepted","dropped","ignored","count"}, without a serializer. */
export function eventReplyJson(r: { accepted: number; dropped: number; ignored: number; count: number | null }): string {
  return `{"accepted":${r.accepted},"dropped":${r.dropped},"ignored":${r.ignored},"count":${r.count === null ? 'null' : r.count}}`;
}
