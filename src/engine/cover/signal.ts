/**
 * Edge signal as syzkaller computes it from a kcov trace.
 *
 * google/syzkaller executor/executor.cc, write_signal<uint64>() (64-bit kernels):
 *
 *     cover_data_t prev_pc = 0;
 *     for each pc of the trace, in order:
 *         uint64 sig = pc;
 *         if (use_cover_edges) {
 *             const uint64 mask = (1 << 12) - 1;   // "Only hash the lower 12 bits"
 *             sig ^= hash(prev_pc & mask) & mask;
 *         }
 *         prev_pc = pc;
 *         ... dedup(sig) / write sig
 *
 * and executor.cc, hash() (not GOOS_test):
 *
 *     a = (a ^ 61) ^ (a >> 16);  a = a + (a << 3);  a = a ^ (a >> 4);
 *     a = a * 0x27d4eb2d;        a = a ^ (a >> 15);
 *
 * So a signal is the PC with its low 12 bits xored by the hash of the low 12
 * bits of the previous PC of the same trace (0 before the first). The high
 * half of the PC passes through unchanged. syz-manager keeps signals as a set
 * (pkg/signal, Signal.Merge: one entry per distinct element), so the union
 * counts distinct signals; the executor's dedup table is only a best-effort
 * filter in front of that set and changes nothing in it.
 */

/** executor.cc hash(uint32): Thomas Wang's integer hash, in uint32 arithmetic. */
export function syzHash(a: number): number {
  a = ((a ^ 61) ^ (a >>> 16)) >>> 0;
  a = (a + (a << 3)) >>> 0;
  a = (a ^ (a >>> 4)) >>> 0;
  a = Math.imul(a, 0x27d4eb2d) >>> 0;
  a = (a ^ (a >>> 15)) >>> 0;
  return a;
}

const MASK = (1 << 12) - 1;

/** hash(x) & 0xfff for every 12-bit x: the fold looks it up instead of hashing each record. */
export const EDGE_HASH = Uint16Array.from({ length: MASK + 1 }, (_, x) => syzHash(x) & MASK);

/** Low half of the signal of `pcLo` after a PC whose low half is `prevLo` (the high half is the PC's own). */
export function signalLo(pcLo: number, prevLo: number): number {
  return (pcLo ^ EDGE_HASH[prevLo & MASK]!) >>> 0;
}

/**
 * Signals of a whole trace of PCs given as little-endian (lo, hi) word pairs,
 * in the same layout; prev_pc starts at 0 as in write_signal.
 */
export function traceSignals(pcs: Uint32Array): Uint32Array {
  const out = new Uint32Array(pcs.length);
  let prev = 0;
  for (let i = 0; i < pcs.length; i += 2) {
    out[i] = signalLo(pcs[i]!, prev);
    out[i + 1] = pcs[i + 1]!;
    prev = pcs[i]!;
  }
  return out;
}
