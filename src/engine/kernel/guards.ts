/**
 * KCOV_UNIQUE_ENABLE guard indices: each distinct PC gets a persistent index,
 * kernel-wide (init_pc_guard numbers guards from 1; bit 0 is never used).
 *
 * An open-addressing hash over typed arrays: a PC is two u32 halves in `keys`,
 * its index in `vals` (0 = empty slot). 12 bytes a slot, at most half full, so
 * 24 bytes per distinct PC at worst, all charged to the kernel's account as the
 * table grows. A PC that finds no room (KCOV_MAX_GUARDS reached, or the budget
 * refuses the growth) gets no guard: it is recorded and never de-duplicated,
 * like a PC beyond the bitmap.
 *
 * Growing doubles the table: the new one is charged in full before it is
 * allocated, the old one stays charged until its PCs are copied, and then its
 * memory is given back at once (each table is one resizable ArrayBuffer,
 * resized to 0), not at some later GC: garbage tables waiting for a collection
 * held ~50 MiB of uncharged RSS at a full budget (docs/limits.md).
 */
import type { KernelMemory } from './memory.js';
import { allocTable, freeTable } from '../tables.js';

/** Index of a PC that has no guard: beyond every bitmap. */
export const NO_GUARD = Number.MAX_SAFE_INTEGER;
/** Bytes of one slot: two key halves and an index. */
export const GUARD_SLOT_BYTES = 12;
const FIRST_SLOTS = 1024;
/** New PCs refused a guard without a budget check after the budget refused the table's growth. */
export const RETRY_AFTER_REFUSED = 65536;

export class GuardIndex {
  /** [I] distinct PCs that get a guard (KCOV_MAX_GUARDS); undefined: no cap. */
  private readonly max: number | undefined;
  private readonly account: KernelMemory;
  /** The table's memory: keys (slots * 8 bytes) then vals (slots * 4). */
  private buffer: ArrayBuffer = new ArrayBuffer(0);
  private keys = new Uint32Array(0);
  private vals = new Uint32Array(0);
  private mask = -1;
  private count = 0;
  /** [E] new PCs still to be refused without asking the budget again, after it refused a growth. */
  private backoff = 0;

  constructor(max: number | undefined, account: KernelMemory) {
    this.max = max;
    this.account = account;
  }

  /** Distinct PCs with a guard. */
  get size(): number {
    return this.count;
  }

  /** Bytes the table holds (charged as 'guards'). */
  get bytes(): number {
    return this.vals.length * GUARD_SLOT_BYTES;
  }

  /** The kernel is being deleted: give the table's memory back now, not at the next GC. */
  release(): void {
    const bytes = this.bytes;
    freeTable(this.buffer);
    this.buffer = new ArrayBuffer(0);
    this.keys = new Uint32Array(0);
    this.vals = new Uint32Array(0);
    this.mask = -1;
    this.count = 0;
    this.account.release(bytes, 'guards');
  }

  /** Guard index of a PC, assigned on first sight; NO_GUARD when there is no room for one. */
  indexOf(lo: number, hi: number): number {
    // Halves may come as int32 (applyUnique passes them so, unboxed); the table holds uint32.
    lo >>>= 0;
    hi >>>= 0;
    const vals = this.vals;
    if (vals.length > 0) {
      const keys = this.keys;
      const mask = this.mask;
      let i = hash(lo, hi) & mask;
      for (;;) {
        const v = vals[i]!;
        if (v === 0) break;
        if (keys[i * 2] === lo && keys[i * 2 + 1] === hi) return v;
        i = (i + 1) & mask;
      }
    }
    // Past KCOV_MAX_GUARDS a PC gets no guard.
    if (this.max !== undefined && this.count >= this.max) return NO_GUARD;
    if ((this.count + 1) * 2 > this.vals.length) {
      // A refused growth is not asked again for every new PC: a batch of a million of
      // them would cost a million ENOMEM errors (seconds of CPU and their garbage).
      if (this.backoff > 0) {
        this.backoff--;
        return NO_GUARD;
      }
      if (!this.grow()) {
        this.backoff = RETRY_AFTER_REFUSED;
        return NO_GUARD;
      }
    }
    const idx = ++this.count;
    this.insert(lo, hi, idx);
    return idx;
  }

  private insert(lo: number, hi: number, idx: number): void {
    const mask = this.mask;
    let i = hash(lo, hi) & mask;
    while (this.vals[i] !== 0) i = (i + 1) & mask;
    this.keys[i * 2] = lo >>> 0;
    this.keys[i * 2 + 1] = hi >>> 0;
    this.vals[i] = idx;
  }

  /**
   * Double the table. The new table is charged in full before it is allocated
   * and the old one stays charged until it is copied, so the account covers
   * both while both live; false when the budget refuses.
   */
  private grow(): boolean {
    const oldBytes = this.vals.length * GUARD_SLOT_BYTES;
    const slots = this.vals.length === 0 ? FIRST_SLOTS : this.vals.length * 2;
    const newBytes = slots * GUARD_SLOT_BYTES;
    try {
      this.account.charge(newBytes, `KCOV_UNIQUE_ENABLE guard table (${slots} slots)`, 'guards');
    } catch {
      return false;
    }
    const oldBuffer = this.buffer;
    const oldKeys = this.keys;
    const oldVals = this.vals;
    try {
      this.buffer = allocTable(newBytes);
    } catch {
      this.account.release(newBytes, 'guards');
      return false;
    }
    this.keys = new Uint32Array(this.buffer, 0, slots * 2);
    this.vals = new Uint32Array(this.buffer, slots * 8, slots);
    this.mask = slots - 1;
    for (let i = 0; i < oldVals.length; i++) {
      const v = oldVals[i]!;
      if (v !== 0) this.insert(oldKeys[i * 2]!, oldKeys[i * 2 + 1]!, v);
    }
    freeTable(oldBuffer);
    this.account.release(oldBytes, 'guards');
    return true;
  }
}

function hash(lo: number, hi: number): number {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
