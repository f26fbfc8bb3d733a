/**
 * A set of 64-bit values (PCs, signals) as an open-addressing hash with
 * linear probing: the halves of each key in two Uint32Arrays and a third
 * Uint32Array of tags (0 = empty slot). It doubles when 3/4 full; every byte
 * of it is charged to the memory budget before it is allocated, so growing
 * past KCOV_MEMORY_LIMIT fails (the caller counts what it could not add)
 * instead of taking memory the budget does not know about.
 *
 * A tag is the caller's: the cover union keeps which area epoch folded a PC
 * in it (see union.ts); a plain set stores 1.
 */
import type { MemoryBudget } from '../memory.js';

export const EMPTY = 0;
const MIN_SLOTS = 1024;
/** Bytes per slot: lo, hi and tag words. */
export const SLOT_BYTES = 12;

/** The slot hash of (lo, hi): a multiply-xorshift mix, good enough for PCs that differ in a few low bits. */
function mix(lo: number, hi: number): number {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export class PcSet {
  /** [I] */
  private readonly budget: MemoryBudget;
  private readonly what: string;
  lo: Uint32Array;
  hi: Uint32Array;
  tag: Uint32Array;
  /** Keys held. */
  size = 0;
  /** Bytes charged to the budget (the three arrays). */
  bytes = 0;
  private mask: number;

  /** Empty sets hold no table (and no budget) until the first key. */
  constructor(budget: MemoryBudget, what: string) {
    this.budget = budget;
    this.what = what;
    this.lo = this.hi = this.tag = new Uint32Array(0);
    this.mask = -1;
  }

  get slots(): number {
    return this.mask + 1;
  }

  /** Slot of the key, or -1. */
  find(lo: number, hi: number): number {
    if (this.size === 0) return -1;
    const mask = this.mask;
    const klo = this.lo, khi = this.hi, tag = this.tag;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      if (tag[i] === EMPTY) return -1;
      if (klo[i] === lo && khi[i] === hi) return i;
    }
  }

  has(lo: number, hi: number): boolean {
    return this.find(lo, hi) >= 0;
  }

  /**
   * Add a key with `tag` (not 0) unless present. Returns the slot it was put
   * in, -1 when it was already there, -2 when the set could not grow (ENOMEM).
   */
  add(lo: number, hi: number, tag: number): number {
    if ((this.size + 1) * 4 > this.slots * 3 && !this.grow()) return -2;
    const mask = this.mask;
    const klo = this.lo, khi = this.hi, tags = this.tag;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      if (tags[i] === EMPTY) {
        klo[i] = lo;
        khi[i] = hi;
        tags[i] = tag;
        this.size++;
        return i;
      }
      if (klo[i] === lo && khi[i] === hi) return -1;
    }
  }

  /** Double the table; false when the budget refuses the bytes. */
  private grow(): boolean {
    const slots = Math.max(MIN_SLOTS, this.slots * 2);
    const bytes = slots * SLOT_BYTES;
    try {
      this.budget.charge(bytes, this.what);
    } catch {
      return false;
    }
    const olo = this.lo, ohi = this.hi, otag = this.tag;
    this.lo = new Uint32Array(slots);
    this.hi = new Uint32Array(slots);
    this.tag = new Uint32Array(slots);
    this.mask = slots - 1;
    this.budget.release(this.bytes);
    this.bytes = bytes;
    const mask = this.mask;
    for (let j = 0; j < otag.length; j++) {
      const t = otag[j]!;
      if (t === EMPTY) continue;
      const lo = olo[j]!, hi = ohi[j]!;
      let i = mix(lo, hi) & mask;
      while (this.tag[i] !== EMPTY) i = (i + 1) & mask;
      this.lo[i] = lo;
      this.hi[i] = hi;
      this.tag[i] = t;
    }
    return true;
  }

  /** Empty it, back to the smallest table. */
  /** Empty it and give its bytes back. */
  clear(): void {
    this.budget.release(this.bytes);
    this.bytes = 0;
    this.lo = this.hi = this.tag = new Uint32Array(0);
    this.mask = -1;
    this.size = 0;
  }

  /** The owner is going away. */
  release(): void {
    this.clear();
  }

  /**
   * The keys, sorted ascending as unsigned 64-bit values, as little-endian
   * words in one buffer (u32[2i] low half, u32[2i+1] high half).
   */
  sorted(): Uint32Array {
    const out = new BigUint64Array(this.size);
    const u = new Uint32Array(out.buffer);
    let n = 0;
    const tag = this.tag;
    for (let i = 0; i < tag.length; i++) {
      if (tag[i] === EMPTY) continue;
      u[n * 2] = this.lo[i]!;
      u[n * 2 + 1] = this.hi[i]!;
      n++;
    }
    out.sort(); // numeric, in native code: no BigInt per key
    return u;
  }

  /** Keys in slot order (unsorted), as little-endian words. */
  words(): Uint32Array {
    const u = new Uint32Array(this.size * 2);
    let n = 0;
    const tag = this.tag;
    for (let i = 0; i < tag.length; i++) {
      if (tag[i] === EMPTY) continue;
      u[n++] = this.lo[i]!;
      u[n++] = this.hi[i]!;
    }
    return u;
  }

  /** Broken rules of the table, for the invariant checker. */
  check(what: string, out: string[]): void {
    let n = 0;
    const mask = this.mask;
    for (let i = 0; i < this.tag.length; i++) {
      if (this.tag[i] === EMPTY) continue;
      n++;
      // Every key must be reachable from its home slot without crossing an empty one.
      for (let j = mix(this.lo[i]!, this.hi[i]!) & mask; j !== i; j = (j + 1) & mask) {
        if (this.tag[j] === EMPTY) {
          out.push(`${what}: key in slot ${i} is cut off from its home slot by an empty slot ${j}`);
          break;
        }
      }
    }
    if (n !== this.size) out.push(`${what}: size ${this.size} != occupied slots ${n}`);
    if (this.bytes !== this.tag.length * SLOT_BYTES) out.push(`${what}: charged ${this.bytes} bytes for ${this.tag.length} slots`);
  }
}
