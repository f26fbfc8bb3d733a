/**
 * A set of 64-bit values (PCs, signals) as an open-addressing hash with
 * linear probing over one Uint32Array of 3-word slots [lo, hi, tag]: one
 * cache line per probe (the table of a real kernel's coverage is far larger
 * than the caches). Tag 0 marks an empty slot. It doubles when 3/4 full;
 * every byte is charged to the memory budget before it is allocated, so
 * growing past KCOV_MEMORY_LIMIT fails (the caller counts what it could not
 * add) instead of taking memory the budget does not know about.
 *
 * A tag is the caller's: the cover union keeps which area epoch folded a PC
 * in it (see union.ts); a plain set stores 1.
 */
/** Where a set's bytes are charged: the memory budget, or a kernel's account of it. */
export interface Charger {
  /** Take `bytes` or throw (ENOMEM), taking nothing. */
  charge(bytes: number, what: string): void;
  release(bytes: number): void;
}

export const EMPTY = 0;
const MIN_SLOTS = 1024;
/** Bytes per slot: lo, hi and tag words. */
export const SLOT_BYTES = 12;

/** Slot hash of (lo, hi): the murmur3 finalizer over lo ^ hi*golden. */
function mix(lo: number, hi: number): number {
  let h = lo ^ Math.imul(hi, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16); // int32 (a Smi): & mask makes it a slot
}

export class PcSet {
  /** [I] */
  private readonly budget: Charger;
  private readonly what: string;
  /** Slot i is t[3i] (lo), t[3i+1] (hi), t[3i+2] (tag). */
  private t: Uint32Array;
  /** Keys held. */
  size = 0;
  /** Bytes charged to the budget. */
  bytes = 0;
  private mask: number;

  /** Empty sets hold no table (and no budget) until the first key. */
  constructor(budget: Charger, what: string) {
    this.budget = budget;
    this.what = what;
    this.t = new Uint32Array(0);
    this.mask = -1;
  }

  get slots(): number {
    return this.mask + 1;
  }

  /** Slot of the key, or -1. */
  find(lo: number, hi: number): number {
    if (this.size === 0) return -1;
    const mask = this.mask;
    const t = this.t;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      const at = i * 3;
      if (t[at + 2] === EMPTY) return -1;
      if (t[at] === lo && t[at + 1] === hi) return i;
    }
  }

  has(lo: number, hi: number): boolean {
    return this.find(lo, hi) >= 0;
  }

  tagAt(slot: number): number {
    return this.t[slot * 3 + 2]!;
  }

  setTag(slot: number, tag: number): void {
    this.t[slot * 3 + 2] = tag;
  }

  /**
   * Add a key with `tag` (not 0) unless present. Returns the slot it was put
   * in, -1 when it was already there, -2 when the set could not grow (ENOMEM).
   */
  add(lo: number, hi: number, tag: number): number {
    if ((this.size + 1) * 4 > this.slots * 3 && !this.grow()) return -2;
    const mask = this.mask;
    const t = this.t;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      const at = i * 3;
      if (t[at + 2] === EMPTY) {
        t[at] = lo;
        t[at + 1] = hi;
        t[at + 2] = tag;
        this.size++;
        return i;
      }
      if (t[at] === lo && t[at + 1] === hi) return -1;
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
    const old = this.t;
    const t = new Uint32Array(slots * 3);
    const mask = slots - 1;
    for (let j = 0; j < old.length; j += 3) {
      const tag = old[j + 2]!;
      if (tag === EMPTY) continue;
      const lo = old[j]!, hi = old[j + 1]!;
      let i = mix(lo, hi) & mask;
      while (t[i * 3 + 2] !== EMPTY) i = (i + 1) & mask;
      t[i * 3] = lo;
      t[i * 3 + 1] = hi;
      t[i * 3 + 2] = tag;
    }
    this.budget.release(this.bytes);
    this.t = t;
    this.mask = mask;
    this.bytes = bytes;
    return true;
  }

  /** Empty it and give its bytes back. */
  clear(): void {
    this.budget.release(this.bytes);
    this.bytes = 0;
    this.t = new Uint32Array(0);
    this.mask = -1;
    this.size = 0;
  }

  /** The owner is going away. */
  release(): void {
    this.clear();
  }

  /** Keys in slot order (unsorted), as little-endian words (u32[2i] low half, u32[2i+1] high half). */
  words(): Uint32Array {
    const u = new Uint32Array(this.size * 2);
    let n = 0;
    const t = this.t;
    for (let j = 0; j < t.length; j += 3) {
      if (t[j + 2] === EMPTY) continue;
      u[n++] = t[j]!;
      u[n++] = t[j + 1]!;
    }
    return u;
  }

  /** The keys sorted ascending as unsigned 64-bit values, as little-endian words. */
  sorted(): Uint32Array {
    const u = this.words();
    new BigUint64Array(u.buffer).sort(); // numeric, in native code: no BigInt per key
    return u;
  }

  /** Broken rules of the table, for the invariant checker. */
  check(what: string, out: string[]): void {
    let n = 0;
    const mask = this.mask;
    const t = this.t;
    for (let i = 0; i * 3 < t.length; i++) {
      if (t[i * 3 + 2] === EMPTY) continue;
      n++;
      // Every key must be reachable from its home slot without crossing an empty one.
      for (let j = mix(t[i * 3]!, t[i * 3 + 1]!) & mask; j !== i; j = (j + 1) & mask) {
        if (t[j * 3 + 2] === EMPTY) {
          out.push(`${what}: key in slot ${i} is cut off from its home slot by an empty slot ${j}`);
          break;
        }
      }
    }
    if (n !== this.size) out.push(`${what}: size ${this.size} != occupied slots ${n}`);
    if (this.bytes !== (t.length / 3) * SLOT_BYTES) out.push(`${what}: charged ${this.bytes} bytes for ${t.length / 3} slots`);
  }
}
