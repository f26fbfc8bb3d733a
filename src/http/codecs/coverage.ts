/** Encoders of a mapped area: JSON and rawcover text. Binary is the area's own bytes. */
import { CMP_STRIDE, PC_STRIDE, type Area, type TraceMode } from '../../engine/area.js';

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

/** JSON of the mapped area as bytes (ASCII, so also UTF-8). */
export function coverageJsonBuffer(trace: Area, mode: TraceMode): Buffer {
  const head = `{"mode":"${mode}","count":${trace.count},"words":${trace.words},` + (mode === 'pc' ? '"pcs":[' : '"cmps":[');
  const u = trace.u32;
  if (mode === 'pc') {
    const n = trace.visible(PC_STRIDE);
    const out = Buffer.allocUnsafe(head.length + n * WORD_MAX + 2);
    let at = putAscii(out, 0, head);
    for (let i = 0, w = 2; i < n; i++, w += 2) {
      if (i > 0) out[at++] = 0x2c; // ,
      out[at++] = 0x22; // "
      at = putU64(out, at, u[w]!, u[w + 1]!);
      out[at++] = 0x22;
    }
    out[at++] = 0x5d; // ]
    out[at++] = 0x7d; // }
    return out.subarray(0, at);
  }
  const n = trace.visible(CMP_STRIDE);
  // {"type":4294967295,"size":128,"const":false,"arg1":…,"arg2":…,"pc":…},
  const out = Buffer.allocUnsafe(head.length + n * (64 + 3 * WORD_MAX) + 2);
  let at = putAscii(out, 0, head);
  for (let i = 0; i < n; i++) {
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
  out[at++] = 0x5d;
  out[at++] = 0x7d;
  return out.subarray(0, at);
}

/** syz-manager /rawcover as bytes: one 0x PC a line; CMP mode: `type arg1 arg2 pc`. */
export function coverageTextBuffer(trace: Area, mode: TraceMode): Buffer {
  const u = trace.u32;
  if (mode === 'pc') {
    const n = trace.visible(PC_STRIDE);
    const out = Buffer.allocUnsafe(n * (2 + 16 + 1));
    let at = 0;
    for (let i = 0, w = 2; i < n; i++, w += 2) {
      at = putU64(out, at, u[w]!, u[w + 1]!);
      out[at++] = 0x0a;
    }
    return out.subarray(0, at);
  }
  const n = trace.visible(CMP_STRIDE);
  const out = Buffer.allocUnsafe(n * 4 * (2 + 16 + 1));
  let at = 0;
  for (let i = 0; i < n; i++) {
    const w = (1 + i * CMP_STRIDE) * 2;
    for (let k = 0; k < 8; k += 2) {
      at = putU64(out, at, u[w + k]!, u[w + k + 1]!);
      out[at++] = k === 6 ? 0x0a : 0x20;
    }
  }
  return out.subarray(0, at);
}

export type CoverageFormat = 'binary' | 'json' | 'text';

/** Pick a format from an Accept header (q-values honoured); JSON when nothing matches. */
export function negotiate(accept: string | undefined): CoverageFormat {
  if (accept === undefined || accept === '') return 'json';
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
