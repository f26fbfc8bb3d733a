import { fail } from './errno.js';

/**
 * What the budget is spent on. The engine charges the first seven through a
 * kernel's account (KernelMemory); the HTTP layer charges request bodies in
 * flight and snapshot encodings directly. `other` is whatever was charged
 * without a category.
 */
export const MEMORY_CATEGORIES = [
  'areas', 'sections', 'guards', 'remotes', 'threads', 'descriptors', 'waiters', 'bodies', 'snapshots', 'other',
] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];

/** Categories a kernel's own account holds (the invariant checker sums them over kernels). */
export const KERNEL_CATEGORIES = ['areas', 'sections', 'guards', 'remotes', 'threads', 'descriptors', 'waiters'] as const satisfies readonly MemoryCategory[];
export type KernelCategory = (typeof KERNEL_CATEGORIES)[number];

export type MemoryBreakdown = Record<MemoryCategory, number>;

function zeroes(): MemoryBreakdown {
  return Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, 0])) as MemoryBreakdown;
}

/**
 * The byte budget everything a client can make the service hold is charged
 * against (KCOV_MEMORY_LIMIT). Charging happens before the memory exists, so
 * a request past the limit is ENOMEM and never an OOM kill.
 */
export class MemoryBudget {
  /** [I] bytes all charges together may take. */
  readonly limit: number;
  /** [E] bytes charged now; moves only in charge/release. */
  used = 0;
  private readonly by: MemoryBreakdown = zeroes();

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Take `bytes` for `what`, or ENOMEM (nothing taken) when they do not fit. */
  charge(bytes: number, what: string, category: MemoryCategory = 'other'): void {
    if (bytes > this.limit - this.used) {
      fail('ENOMEM', `${what}: ${bytes} bytes would exceed KCOV_MEMORY_LIMIT (${this.used} of ${this.limit} in use)`);
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
}
