import { fail } from './errno.js';

/**
 * The byte budget every coverage area of every kernel is charged against
 * (KCOV_MEMORY_LIMIT). Charging happens before the ArrayBuffer exists, so a
 * request past the limit is ENOMEM and never an OOM kill.
 */
export class MemoryBudget {
  /** [I] bytes all areas together may take. */
  readonly limit: number;
  /** [E] bytes charged by live areas; moves only in charge/release. */
  used = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  charge(bytes: number, what: string): void {
    if (bytes > this.limit - this.used) {
      fail('ENOMEM', `${what}: ${bytes} bytes would exceed KCOV_MEMORY_LIMIT (${this.used} of ${this.limit} in use)`);
    }
    this.used += bytes;
  }

  release(bytes: number): void {
    this.used -= bytes;
  }
}
