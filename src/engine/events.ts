/**
 * Instrumentation events. A batch is decoded completely first (a bad value
 * fails the whole batch before anything is written), then applied to the
 * thread's trace target in order. Records of the other mode are ignored;
 * records past capacity are dropped, as each kernel drops them.
 */
import { CMP_STRIDE, PC_STRIDE, WORD, strideOf } from './area.js';
import { fail } from './errno.js';
import type { TraceTarget } from './model.js';
import { CMP_CONST, cmpSizeBits, fnv1a64 } from '../wire/records.js';
import { parseU64 } from '../wire/u64.js';

export interface EventResult {
  accepted: number;
  dropped: number;
  ignored: number;
  /** Count of the area written, or null when nothing was traced. */
  count: number | null;
}

/** A run of records of one kind, as packed little-endian words. */
export interface Segment {
  readonly kind: 'pc' | 'cmp';
  readonly records: number;
  /** The bytes, possibly split over several chunks (a request body as received). */
  readonly chunks: readonly Uint8Array[];
}

function u64At(value: unknown, out: Uint32Array, at: number, where: string): void {
  if (!parseU64(value, out, at)) {
    fail('EINVAL', `${where}: ${JSON.stringify(value)} is not a 64-bit unsigned value`);
  }
}

function segment(kind: 'pc' | 'cmp', words: Uint32Array): Segment {
  const stride = kind === 'cmp' ? CMP_STRIDE : PC_STRIDE;
  return {
    kind,
    records: words.length / 2 / stride,
    chunks: [new Uint8Array(words.buffer, words.byteOffset, words.byteLength)],
  };
}

const SWITCH_BITS = new Set([8, 16, 32, 64]);
const CMP_SIZES = new Set([1, 2, 4, 8]);

/**
 * Decode a JSON batch into segments, keeping the order of the body's keys
 * (`pcs`, `sites`, `cmps`, `switches`, each any number of times in any order).
 */
export function decodeJsonEvents(body: Record<string, unknown>, order: readonly string[] = Object.keys(body)): Segment[] {
  const out: Segment[] = [];
  for (const key of order) {
    if (!Object.hasOwn(body, key)) continue;
    const list = body[key];
    if (!Array.isArray(list)) fail('EINVAL', `${key}: expected an array`);
    switch (key) {
      case 'pcs': {
        const w = new Uint32Array(list.length * 2);
        // The value's name is spelt only for an error: no string per PC.
        for (let i = 0; i < list.length; i++) if (!parseU64(list[i], w, i * 2)) u64At(list[i], w, i * 2, `pcs[${i}]`);
        out.push(segment('pc', w));
        break;
      }
      case 'sites': {
        const w = new Uint32Array(list.length * 2);
        for (let i = 0; i < list.length; i++) {
          if (typeof list[i] !== 'string') fail('EINVAL', `sites[${i}]: expected a string`);
          fnv1a64(list[i] as string, w, i * 2);
        }
        out.push(segment('pc', w));
        break;
      }
      case 'cmps': {
        const w = new Uint32Array(list.length * 8);
        for (let i = 0; i < list.length; i++) {
          const c = list[i] as Record<string, unknown>;
          const at = i * 8;
          const where = `cmps[${i}]`;
          if (typeof c !== 'object' || c === null) fail('EINVAL', `${where}: expected an object`);
          if (c.type !== undefined) {
            u64At(c.type, w, at, `${where}.type`);
          } else {
            if (typeof c.size !== 'number' || !CMP_SIZES.has(c.size)) {
              fail('EINVAL', `${where}.size: expected 1, 2, 4 or 8 (bytes)`);
            }
            w[at] = cmpSizeBits(c.size) | (c.const === true ? CMP_CONST : 0);
          }
          u64At(c.arg1, w, at + 2, `${where}.arg1`);
          u64At(c.arg2, w, at + 4, `${where}.arg2`);
          u64At(c.pc, w, at + 6, `${where}.pc`);
        }
        out.push(segment('cmp', w));
        break;
      }
      case 'switches': {
        // __sanitizer_cov_trace_switch: one const comparison per case, arg1 = case, arg2 = val.
        let n = 0;
        for (let i = 0; i < list.length; i++) {
          const s = list[i] as Record<string, unknown>;
          if (typeof s !== 'object' || s === null || !Array.isArray(s.cases)) {
            fail('EINVAL', `switches[${i}]: expected {val, size, cases, pc}`);
          }
          if (typeof s.size !== 'number' || !SWITCH_BITS.has(s.size)) {
            fail('EINVAL', `switches[${i}].size: expected 8, 16, 32 or 64 (bits)`);
          }
          n += s.cases.length;
        }
        const w = new Uint32Array(n * 8);
        const head = new Uint32Array(4);
        let at = 0;
        for (let i = 0; i < list.length; i++) {
          const s = list[i] as { val: unknown; size: number; cases: unknown[]; pc: unknown };
          u64At(s.val, head, 0, `switches[${i}].val`);
          u64At(s.pc, head, 2, `switches[${i}].pc`);
          const type = cmpSizeBits(s.size / 8) | CMP_CONST;
          for (let j = 0; j < s.cases.length; j++, at += 8) {
            w[at] = type;
            u64At(s.cases[j], w, at + 2, `switches[${i}].cases[${j}]`);
            w[at + 4] = head[0]!;
            w[at + 5] = head[1]!;
            w[at + 6] = head[2]!;
            w[at + 7] = head[3]!;
          }
        }
        out.push(segment('cmp', w));
        break;
      }
      default:
        fail('EINVAL', `unknown event list "${key}" (expected pcs, sites, cmps, switches)`);
    }
  }
  return out;
}

/** A binary body as one segment; its length must be whole records. */
export function binarySegment(kind: 'pc' | 'cmp', chunks: readonly Uint8Array[], length: number): Segment {
  const recordBytes = strideOf(kind) * WORD;
  if (length % recordBytes !== 0) {
    fail('EINVAL', `body of ${length} bytes is not a whole number of ${kind} records (${recordBytes} bytes each)`);
  }
  return { kind, records: length / recordBytes, chunks };
}

const straddle = new Uint32Array(2);
const straddleBytes = new Uint8Array(straddle.buffer);

/**
 * KCOV_UNIQUE_ENABLE: each PC of the segment once per reset, read in place from the
 * chunks it arrived in (no copy of the batch into one buffer: an 8 MiB batch made 8 MiB
 * of garbage a request). Halves go to the calls as int32 so they stay small integers:
 * uint32 halves past 2^31 were boxed, some 50 MB of garbage a million-PC batch.
 */
function applyUnique(seg: Segment, target: TraceTarget, u: NonNullable<TraceTarget['unique']>, r: EventResult): void {
  const bits = u.bitmap.u32;
  const area = target.area;
  const one = (lo: number, hi: number): void => {
    const idx = u.indexOf(lo, hi);
    if (idx < u.bits) {
      const mask = 1 << (idx & 31);
      const k = idx >>> 5;
      // Seen since the last reset: not recorded at all.
      if ((bits[k]! & mask) !== 0) {
        r.ignored++;
        return;
      }
      bits[k] = (bits[k]! | mask) >>> 0;
      // The bitmap is part of the area (an ETag covers it) even when the record is then dropped.
      u.bitmap.touch();
    }
    if (area.pushPC(lo, hi)) r.accepted++;
    else r.dropped++;
  };
  let left = seg.records;
  let carry = 0;
  for (const c of seg.chunks) {
    if (left === 0) return;
    let off = 0;
    if (carry > 0) {
      // A record split between two reads of the socket.
      const take = Math.min(8 - carry, c.length);
      straddleBytes.set(c.subarray(0, take), carry);
      carry += take;
      off = take;
      if (carry < 8) continue;
      one(straddle[0]! | 0, straddle[1]! | 0);
      left--;
      carry = 0;
    }
    const whole = Math.min(left, (c.length - off) >>> 3);
    if ((c.byteOffset + off) % 4 === 0) {
      const w = new Int32Array(c.buffer, c.byteOffset + off, whole * 2);
      for (let i = 0; i < whole; i++) one(w[i * 2]!, w[i * 2 + 1]!);
    } else {
      const v = new DataView(c.buffer, c.byteOffset + off, whole * 8);
      for (let i = 0; i < whole; i++) one(v.getInt32(i * 8, true), v.getInt32(i * 8 + 4, true));
    }
    left -= whole;
    off += whole * 8;
    if (left > 0 && off < c.length) {
      straddleBytes.set(c.subarray(off, Math.min(c.length, off + 8)), 0);
      carry = Math.min(8, c.length - off);
    }
  }
}

/** Apply decoded segments to a target, in order. Never throws. */
export function applySegments(target: TraceTarget | null, segments: readonly Segment[]): EventResult {
  // Nearly every batch: one segment of the traced kind, no KCOV_UNIQUE_ENABLE. One copy, one result.
  if (segments.length === 1 && target !== null && target.unique === undefined) {
    const seg = segments[0]!;
    if (seg.kind === target.mode && seg.records > 0) {
      const took = target.area.appendChunks(seg.chunks, seg.records, seg.kind === 'cmp' ? CMP_STRIDE : PC_STRIDE);
      return { accepted: took, dropped: seg.records - took, ignored: 0, count: target.area.count };
    }
  }
  return applyEach(target, segments);
}

/** The general case, kept apart so the fast path above stays small enough to inline. */
function applyEach(target: TraceTarget | null, segments: readonly Segment[]): EventResult {
  const r: EventResult = { accepted: 0, dropped: 0, ignored: 0, count: null };
  let traced = false;
  for (const seg of segments) {
    if (target === null || seg.kind !== target.mode) {
      r.ignored += seg.records;
      continue;
    }
    traced = traced || seg.records > 0;
    if (target.unique !== undefined) {
      applyUnique(seg, target, target.unique, r);
      continue;
    }
    const took = target.area.appendChunks(seg.chunks, seg.records, strideOf(seg.kind));
    r.accepted += took;
    r.dropped += seg.records - took;
  }
  if (traced && target !== null) r.count = target.area.count;
  return r;
}
