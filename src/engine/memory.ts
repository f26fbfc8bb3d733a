import { MEMORY_CATEGORIES, type MemoryCategory } from '../wire/names.js';
import { fail } from './errno.js';

// The categories are the wire's (GET /v1/kernels shows them); a kernel's account charges the first eight.
export { MEMORY_CATEGORIES, type MemoryCategory } from '../wire/names.js';

/** Categories a kernel's own account holds (the invariant checker sums them over kernels). */
export const KERNEL_CATEGORIES = ['areas', 'sections', 'guards', 'remotes', 'threads', 'descriptors', 'waiters', 'cover'] as const satisfies readonly MemoryCategory[];
export type KernelCategory = (typeof KERNEL_CATEGORIES)[number];

export type MemoryBreakdown = Record<MemoryCategory, number>;

function zeroes(): MemoryBreakdown {
  return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, 0])) as MemoryBreakdown;
}

/** Smaller freed areas are not pooled: the allocator reuses their pages anyway. */
export const POOL_MIN_BYTES = 1024 * 1024;

/**
 * The byte budget everything a client can make the service hold is charged
 * against (KCOV_MEMORY_LIMIT). Charging happens before the memory exists, so
 * a request past the limit is ENOMEM and never an OOM kill.
 *
 * It also keeps the area pool: buffers of freed areas (KCOV_AREA_POOL bytes at
 * most), charged as `pool` while idle. A fresh area's pages fault in on their
 * first write (about 0.7 ms a MiB on a VM, more than the copy of the records
 * itself); an area of the same size allocated later reuses one, zeroed as a
 * fresh mmap is. A charge that does not fit first gives idle buffers back,
 * oldest first, so the pool never makes a charge fail.
 */
export class MemoryBudget {
  /** [I] bytes all charges together may take. */
  readonly limit: number;
  /** [I] bytes the pool may keep idle. */
  readonly poolLimit: number;
  /** [E] bytes charged now; moves only in charge/release. */
  used = 0;
  private readonly by: MemoryBreakdown = zeroes();
  /** [E] idle buffers, oldest first; their bytes are by.pool. */
  private readonly idle: ArrayBuffer[] = [];
  /** [E] buffers the pool gave out again, and gave back to the allocator to make room. */
  reused = 0;
  evicted = 0;

  /** [I] bytes the cover unions of all kernels may take together (KCOV_COVER_LIMIT). */
  readonly coverLimit: number;

  constructor(limit: number, poolLimit = 0, coverLimit = limit) {
    this.limit = limit;
    this.poolLimit = Math.max(0, Math.min(poolLimit, limit));
    this.coverLimit = Math.max(0, Math.min(coverLimit, limit));
  }

  /** [I] frees what can be freed at once (the unions' freed areas awaiting a fold), before a charge fails. */
  reclaim: (() => void) | null = null;
  /** [E] a reclaim is running (it charges the unions as it folds: no reclaim from inside). */
  private reclaiming = false;

  /** Take `bytes` for `what`, or ENOMEM (nothing taken) when they do not fit. */
  charge(bytes: number, what: string, category: MemoryCategory = 'other'): void {
    // The unions grow with every new PC; their own cap keeps room for areas and bodies.
    if (category === 'cover' && bytes > this.coverLimit - this.by.cover) {
      fail('ENOMEM', `${what}: ${bytes} bytes would exceed KCOV_COVER_LIMIT (${this.by.cover} of ${this.coverLimit} in use)`);
    }
    if (bytes > this.limit - this.used + this.by.pool && this.reclaim !== null && !this.reclaiming) {
      // Reclaiming folds, and folding charges the union: not again from inside.
      this.reclaiming = true;
      try {
        this.reclaim();
      } finally {
        this.reclaiming = false;
      }
    }
    if (bytes > this.limit - this.used) {
      if (bytes > this.limit - this.used + this.by.pool) {
        fail('ENOMEM', `${what}: ${bytes} bytes would exceed KCOV_MEMORY_LIMIT (${this.used - this.by.pool} of ${this.limit} in use)`);
      }
      while (bytes > this.limit - this.used) this.evictOldest();
    }
    this.used += bytes;
    this.by[category] += bytes;
  }

  release(bytes: number, category: MemoryCategory = 'other'): void {
    this.used -= bytes;
    this.by[category] -= bytes;
  }

  /** Bytes charged now, per category (their sum is `used`). */
  breakdown(): MemoryBreakdown {
    return { ...this.by };
  }

  /**
   * An idle buffer of exactly `bytes`, zeroed, its pool charge released (the
   * caller charges it to its own category); null when the pool has none.
   */
  reuse(bytes: number): ArrayBuffer | null {
    if (bytes < POOL_MIN_BYTES) return null;
    const idle = this.idle;
    for (let i = idle.length - 1; i >= 0; i--) {
      const b = idle[i]!;
      if (b.byteLength !== bytes) continue;
      idle.splice(i, 1);
      this.release(bytes, 'pool');
      new Uint8Array(b).fill(0);
      this.reused++;
      return b;
    }
    return null;
  }

  /**
   * A freed area's buffer, which nothing refers to any more: keep it idle when
   * it is large enough and fits the pool (older idle buffers make room).
   */
  recycle(buffer: ArrayBuffer): void {
    const bytes = buffer.byteLength;
    if (bytes < POOL_MIN_BYTES || bytes > this.poolLimit) return;
    while (this.by.pool + bytes > this.poolLimit) this.evictOldest();
    if (bytes > this.limit - this.used) return; // the room went to charges meanwhile
    this.idle.push(buffer);
    this.used += bytes;
    this.by.pool += bytes;
  }

  /** Give every idle buffer back (shutdown, tests). */
  drainPool(): void {
    while (this.idle.length > 0) this.evictOldest();
  }

  private evictOldest(): void {
    const b = this.idle.shift()!;
    this.release(b.byteLength, 'pool');
    this.evicted++;
  }

  /** Idle buffers (for the invariant checker). */
  idleBuffers(): readonly ArrayBuffer[] {
    return this.idle;
  }
}
