/**
 * KCOV_UNIQUE_ENABLE guard indices: each distinct PC gets a persistent index,
 * kernel-wide (init_pc_guard numbers guards from 1; bit 0 is never used).
 */
export class GuardIndex {
  private readonly map = new Map<string, number>();
  /** [I] distinct PCs that get a guard (KCOV_MAX_GUARDS); undefined: no cap. */
  private readonly max: number | undefined;

  constructor(max: number | undefined) {
    this.max = max;
  }

  get size(): number {
    return this.map.size;
  }

  /** Guard index of a PC, assigned on first sight; past the cap, one no bitmap holds. */
  indexOf(lo: number, hi: number): number {
    const key = hi * 0x1_0000_0000 + lo; // exact below 2^53; above, fall back to a string
    const k = Number.isSafeInteger(key) ? String(key) : `${hi}:${lo}`;
    let idx = this.map.get(k);
    if (idx === undefined) {
      // Past KCOV_MAX_GUARDS a PC gets no guard: like a PC beyond the bitmap, recorded and never de-duplicated.
      if (this.max !== undefined && this.map.size >= this.max) return Number.MAX_SAFE_INTEGER;
      idx = this.map.size + 1;
      this.map.set(k, idx);
    }
    return idx;
  }
}
