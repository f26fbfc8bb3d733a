/**
 * Coverage areas: what userspace maps. Word 0 holds the record count; record i
 * of stride s starts at word 1 + i*s (PC stride 1, CMP stride 4). All four
 * kernels agree on the capacity, floor((words - 1) / stride), and on what
 * happens past it: the record is dropped and the count does not move.
 *
 * Ownership ([E] = only the engine, synchronously, inside one request):
 * the bytes of an area change only through the writers below, a count reset
 * or a remote move; nothing holds a reference across an await.
 */

import { CMP_STRIDE, PC_STRIDE, WORD } from '../wire/records.js';

// The layout is the wire's; engine code keeps importing it from here.
export { CMP_STRIDE, PC_STRIDE, WORD, strideOf, type TraceMode } from '../wire/records.js';
const TWO32 = 0x1_0000_0000;

/**
 * [E] One buffer's identity and a count of writes to it, shared by every Area
 * over that buffer (windows, the unique bitmap): a snapshot's weak ETag in O(1).
 * Every writer below bumps `writes`; code that writes the views itself calls touch().
 */
export interface AreaStamp {
  readonly id: number;
  writes: number;
}
const STAMPS = new WeakMap<ArrayBuffer, AreaStamp>();
let nextStamp = 1;

/** A word-addressed window on a buffer: a whole area, or the trace part of one. */
export class Area {
  /** [I] memory of the whole allocation. */
  readonly buffer: ArrayBuffer;
  /** [I] first word of this window in the buffer (0 for a whole area). */
  readonly base: number;
  /** [I] length of this window in words, count word included. */
  readonly words: number;
  /** [I] views over the window; u32[2k] and u32[2k+1] are word k's halves. */
  readonly u32: Uint32Array;
  readonly bytes: Uint8Array;
  /** [I] capacity in PC and CMP records (the hot path asks on every batch). */
  private readonly pcCapacity: number;
  private readonly cmpCapacity: number;
  /** [E] shared by all Areas over `buffer`. */
  readonly stamp: AreaStamp;

  constructor(buffer: ArrayBuffer, base = 0, words = buffer.byteLength / WORD - base) {
    this.buffer = buffer;
    this.base = base;
    this.words = words;
    this.u32 = new Uint32Array(buffer, base * WORD, words * 2);
    this.bytes = new Uint8Array(buffer, base * WORD, words * WORD);
    this.pcCapacity = words - 1;
    this.cmpCapacity = Math.floor((words - 1) / CMP_STRIDE);
    // A new view of known memory counts as a write: a recycled buffer never keeps an old tag.
    const stamp = STAMPS.get(buffer);
    if (stamp === undefined) STAMPS.set(buffer, (this.stamp = { id: nextStamp++, writes: 0 }));
    else (this.stamp = stamp).writes++;
  }

  /** The memory was written other than through the methods here. */
  touch(): void {
    this.stamp.writes++;
  }

  static allocate(words: number): Area {
    return new Area(new ArrayBuffer(words * WORD));
  }

  /** The same memory, starting `offset` words in (KCOV_UNIQUE_ENABLE's trace). */
  window(offset: number): Area {
    return new Area(this.buffer, this.base + offset, this.words - offset);
  }

  /** Count word as stored (always a safe integer here: only the API writes it). */
  get count(): number {
    return this.u32[1]! * TWO32 + this.u32[0]!;
  }

  set count(value: number) {
    this.stamp.writes++;
    if (value < TWO32) {
      this.u32[0] = value;
      this.u32[1] = 0;
    } else {
      this.u32[0] = value % TWO32;
      this.u32[1] = Math.floor(value / TWO32);
    }
  }

  capacity(stride: number): number {
    return stride === PC_STRIDE ? this.pcCapacity : stride === CMP_STRIDE ? this.cmpCapacity : Math.floor((this.words - 1) / stride);
  }

  /** Records that reading shows: min(count, capacity). */
  visible(stride: number): number {
    return Math.min(this.count, this.capacity(stride));
  }

  /** Free records left; 0 when the count is at or past capacity. */
  room(stride: number): number {
    const left = this.capacity(stride) - this.count;
    return left > 0 ? left : 0;
  }

  /**
   * Append whole records from byte chunks (a request body as it arrived). The
   * chunks together hold `records * stride` words; a record may straddle two
   * chunks. Copies only what fits, then moves the count once.
   */
  appendChunks(chunks: readonly Uint8Array[], records: number, stride: number): number {
    // The hot path of every binary batch: the count read once from its halves, no getter or setter calls.
    const u32 = this.u32;
    const hi = u32[1]!;
    const count = hi === 0 ? u32[0]! : hi * TWO32 + u32[0]!;
    const left = (stride === PC_STRIDE ? this.pcCapacity : stride === CMP_STRIDE ? this.cmpCapacity : this.capacity(stride)) - count;
    const take = left <= 0 ? 0 : records < left ? records : left;
    if (take === 0) return 0;
    this.stamp.writes++;
    const bytes = this.bytes;
    let need = take * stride * WORD;
    let at = (1 + count * stride) * WORD;
    const first = chunks[0]!;
    if (chunks.length === 1 && first.length === need) {
      bytes.set(first, at);
    } else {
      for (let i = 0; i < chunks.length && need > 0; i++) {
        const chunk = chunks[i]!;
        if (chunk.length <= need) {
          bytes.set(chunk, at);
          at += chunk.length;
          need -= chunk.length;
        } else {
          bytes.set(chunk.subarray(0, need), at);
          need = 0;
        }
      }
    }
    const n = count + take;
    if (n < TWO32) {
      u32[0] = n;
      u32[1] = 0;
    } else {
      this.count = n;
    }
    return take;
  }

  /** Append one PC record from its halves; false when dropped. */
  pushPC(lo: number, hi: number): boolean {
    const count = this.count;
    if (count >= this.capacity(PC_STRIDE)) return false;
    const w = (1 + count) * 2;
    this.u32[w] = lo;
    this.u32[w + 1] = hi;
    this.count = count + 1;
    return true;
  }

  /** Append one CMP record; `v` holds type, arg1, arg2, pc as 8 halves. */
  pushCmp(v: Uint32Array): boolean {
    const count = this.count;
    if (count >= this.capacity(CMP_STRIDE)) return false;
    this.u32.set(v, (1 + count * CMP_STRIDE) * 2);
    this.count = count + 1;
    return true;
  }

  /** Low half of word `word` (tests and debugging read records with it). */
  wordLo(word: number): number {
    return this.u32[word * 2]!;
  }
}
