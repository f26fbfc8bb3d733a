/** Encoders of a mapped area: JSON and rawcover text. Binary is the area's own bytes. */
import { Readable } from 'node:stream';
import { CMP_STRIDE, WORD, strideOf, type Area, type TraceMode } from '../../engine/area.js';

/** ASCII codes of the hex digits. */
const HEX = Uint8Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

/**
 * Write `0x` and the word (lo, hi) as lowercase hex without zero padding
 * (formatU64's spelling) at out[at]; returns the next offset. Nibble by
 * nibble into bytes: no string per record.
 */
export function putU64(out: Uint8Array, at: number, lo: number, hi: number): number {
  out[at++] = 0x30; // 0
  out[at++] = 0x78; // x
  let digits: number;
  if (hi !== 0) {
    digits = (32 - Math.clz32(hi) + 3) >> 2;
    for (let s = (digits - 1) * 4; s >= 0; s -= 4) out[at++] = HEX[(hi >>> s) & 15]!;
    digits = 8;
  } else {
    digits = lo === 0 ? 1 : (32 - Math.clz32(lo) + 3) >> 2;
  }
  for (let s = (digits - 1) * 4; s >= 0; s -= 4) out[at++] = HEX[(lo >>> s) & 15]!;
  return at;
}

function putAscii(out: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) out[at++] = s.charCodeAt(i);
  return at;
}

/** Longest `"0x…",` of one word. */
const WORD_MAX = 2 + 16 + 3;
/** Longest JSON of one CMP record: {"type":4294967295,"size":128,"const":false,"arg1":…,"arg2":…,"pc":…}, */
const CMP_JSON_MAX = 64 + 3 * WORD_MAX;
/** Longest text line of one record. */
const PC_TEXT_MAX = 2 + 16 + 1;
const CMP_TEXT_MAX = 4 * PC_TEXT_MAX;

export type TextFormat = 'json' | 'text';

function jsonHead(count: number, words: number, mode: TraceMode): string {
  return `{"mode":"${mode}","count":${count},"words":${words},` + (mode === 'pc' ? '"pcs":[' : '"cmps":[');
}

function maxBytes(format: TextFormat, mode: TraceMode, records: number): number {
  return records * (format === 'json' ? (mode === 'pc' ? WORD_MAX : CMP_JSON_MAX) : mode === 'pc' ? PC_TEXT_MAX : CMP_TEXT_MAX);
}

/**
 * Records [from, to) of the trace words `u` (word 0 the count) as JSON list
 * elements (a comma before each but record 0) or rawcover lines, at out[at].
 */
function encodeRecords(u: Uint32Array, format: TextFormat, mode: TraceMode, from: number, to: number, out: Uint8Array, at: number): number {
  if (format === 'json' && mode === 'pc') {
    for (let i = from, w = (1 + from) * 2; i < to; i++, w += 2) {
      if (i > 0) out[at++] = 0x2c; // ,
      out[at++] = 0x22; // "
      at = putU64(out, at, u[w]!, u[w + 1]!);
      out[at++] = 0x22;
    }
  } else if (format === 'json') {
    for (let i = from; i < to; i++) {
      const w = (1 + i * CMP_STRIDE) * 2;
      const type = u[w]!;
      if (i > 0) out[at++] = 0x2c;
      at = putAscii(out, at, `{"type":${type},"size":${1 << ((type >>> 1) & 3)},"const":${(type & 1) === 1},"arg1":"`);
      at = putU64(out, at, u[w + 2]!, u[w + 3]!);
      at = putAscii(out, at, '","arg2":"');
      at = putU64(out, at, u[w + 4]!, u[w + 5]!);
      at = putAscii(out, at, '","pc":"');
      at = putU64(out, at, u[w + 6]!, u[w + 7]!);
      at = putAscii(out, at, '"}');
    }
  } else if (mode === 'pc') {
    for (let i = from, w = (1 + from) * 2; i < to; i++, w += 2) {
      at = putU64(out, at, u[w]!, u[w + 1]!);
      out[at++] = 0x0a;
    }
  } else {
    for (let i = from; i < to; i++) {
      const w = (1 + i * CMP_STRIDE) * 2;
      for (let k = 0; k < 8; k += 2) {
        at = putU64(out, at, u[w + k]!, u[w + k + 1]!);
        out[at++] = k === 6 ? 0x0a : 0x20;
      }
    }
  }
  return at;
}

/** JSON of the mapped area as bytes (ASCII, so also UTF-8). */
export function coverageJsonBuffer(trace: Area, mode: TraceMode): Buffer {
  const head = jsonHead(trace.count, trace.words, mode);
  const n = trace.visible(strideOf(mode));
  const out = Buffer.allocUnsafe(head.length + maxBytes('json', mode, n) + 2);
  let at = putAscii(out, 0, head);
  at = encodeRecords(trace.u32, 'json', mode, 0, n, out, at);
  out[at++] = 0x5d; // ]
  out[at++] = 0x7d; // }
  return out.subarray(0, at);
}

/** syz-manager /rawcover as bytes: one 0x PC a line; CMP mode: `type arg1 arg2 pc`. */
export function coverageTextBuffer(trace: Area, mode: TraceMode): Buffer {
  const n = trace.visible(strideOf(mode));
  const out = Buffer.allocUnsafe(maxBytes('text', mode, n));
  return out.subarray(0, encodeRecords(trace.u32, 'text', mode, 0, n, out, 0));
}

/** Records encoded per chunk of a streamed snapshot (about 64 KiB of PC JSON). */
export const STREAM_RECORDS = 3072;

/**
 * A JSON or text snapshot of `trace` as a stream: the visible records are
 * copied at this instant (the atomic read), then encoded STREAM_RECORDS at a
 * time as the reader takes them (backpressure), so a slow reader holds the
 * copy and a chunk or two, never the whole encoding. `copyBytes` is the size
 * of the copy, for the caller to charge; `onClose` runs once when the stream
 * ends or is destroyed (the reader left), to release that charge.
 */
export function coverageStream(trace: Area, mode: TraceMode, format: TextFormat, onClose: () => void): Readable {
  const n = trace.visible(strideOf(mode));
  const words = 1 + n * strideOf(mode);
  const copy = new Uint32Array(words * 2);
  copy.set(trace.u32.subarray(0, words * 2));
  const head = format === 'json' ? jsonHead(trace.count, trace.words, mode) : '';
  let next = 0;
  let started = false;
  return new Readable({
    read() {
      if (!started) {
        started = true;
        if (head !== '') this.push(Buffer.from(head, 'latin1'));
      }
      while (next < n) {
        const to = Math.min(n, next + STREAM_RECORDS);
        const out = Buffer.allocUnsafe(maxBytes(format, mode, to - next));
        const at = encodeRecords(copy, format, mode, next, to, out, 0);
        next = to;
        if (!this.push(out.subarray(0, at))) return;
      }
      if (format === 'json') this.push(Buffer.from(']}', 'latin1'));
      this.push(null);
    },
    destroy(err, cb) {
      onClose();
      cb(err);
    },
  });
}

/** Bytes coverageStream copies for `trace` in `mode`. */
export function streamCopyBytes(trace: Area, mode: TraceMode): number {
  return (1 + trace.visible(strideOf(mode)) * strideOf(mode)) * WORD;
}

export type CoverageFormat = 'binary' | 'json' | 'text';

/** The Accept values clients send nearly always: one type, no parameters (what the parse below gives them). */
const SINGLE = new Map<string, CoverageFormat>([
  ['application/octet-stream', 'binary'], ['application/json', 'json'], ['text/plain', 'text'], ['*/*', 'json'],
]);

/** Pick a format from an Accept header (q-values honoured); JSON when nothing matches. */
export function negotiate(accept: string | undefined): CoverageFormat {
  if (accept === undefined || accept === '') return 'json';
  return SINGLE.get(accept) ?? negotiateList(accept);
}

/** The general parse of an Accept list (negotiate's short path is held to it in test/http/codecs/negotiate.test.ts). */
export function negotiateList(accept: string): CoverageFormat {
  let best: CoverageFormat | null = null;
  let bestQ = -1;
  for (const part of accept.split(',')) {
    const [rawType, ...params] = part.trim().split(';');
    const type = (rawType ?? '').trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    const f: CoverageFormat | null =
      type === 'application/octet-stream' ? 'binary'
      : type === 'application/json' || type === 'application/*' || type === '*/*' ? 'json'
      : type === 'text/plain' || type === 'text/*' ? 'text'
      : null;
    if (f !== null && q > 0 && q > bestQ) {
      best = f;
      bestQ = q;
    }
  }
  return best ?? 'json';
}

/** A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null to serve the whole body. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return null; // multiple or odd ranges: RFC 9110 lets us ignore Range
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  let start: number, end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
