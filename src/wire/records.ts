/**
 * The record layout every kcov area shares, and the ids of hand-placed sites.
 * All four kernels agree: word 0 holds the record count; a PC record is one
 * 8-byte word, a CMP record four (type, arg1, arg2, pc); record i of stride s
 * starts at word 1 + i*s, so an area of n words holds floor((n - 1) / s).
 */

/** Bytes of one area word (unsigned long / kcov_int_t / uint64_t on LP64). */
export const WORD = 8;
export const PC_STRIDE = 1;
export const CMP_STRIDE = 4;

export type TraceMode = 'pc' | 'cmp';

/** Words per record of a mode. */
export function strideOf(mode: TraceMode): number {
  return mode === 'cmp' ? CMP_STRIDE : PC_STRIDE;
}

/** Records of `stride` words an area of `words` words holds (word 0 is the count). */
export function capacityOf(words: number, stride: number): number {
  return words <= 0 ? 0 : Math.floor((words - 1) / stride);
}

/** KCOV_CMP_CONST: the comparison has a compile-time constant operand. Identical in all four kernels. */
export const CMP_CONST = 1;

/** KCOV_CMP_SIZE(log2 bytes): the type bits of an operand size of 1, 2, 4 or 8 bytes. */
export function cmpSizeBits(bytes: number): number {
  return (31 - Math.clz32(bytes)) << 1;
}

/** Operand size in bytes from a CMP type word (KCOV_CMP_MASK). */
export function cmpSizeOf(type: number): number {
  return 1 << ((type >>> 1) & 3);
}

/**
 * FNV-1a 64 over the UTF-8 bytes of a site string, written as (lo, hi) into
 * out[at], out[at + 1]: the PC the server gives a JSON `sites` entry and the
 * client's batcher gives `edge()`. The multiply by the prime
 * 0x100000001b3 = 2^40 + 0x1b3 runs on 16-bit limbs so every intermediate
 * stays exact in a double.
 */
export function fnv1a64(site: string, out: Uint32Array, at: number): void {
  const bytes = Buffer.from(site, 'utf8');
  fnv1a64Bytes(bytes, 0, bytes.length, out, at);
}

/** FNV-1a-64 of bytes[start, end) (a site's UTF-8), into out[at] (low half) and out[at + 1]. */
export function fnv1a64Bytes(bytes: Uint8Array, start: number, end: number, out: Uint32Array, at: number): void {
  let a0 = 0x2325, a1 = 0x8422, a2 = 0x9ce4, a3 = 0xcbf2; // 0xcbf29ce484222325
  for (let i = start; i < end; i++) {
    a0 ^= bytes[i]!;
    const t0 = a0 * 0x1b3;
    const t1 = a1 * 0x1b3 + (t0 >>> 16);
    const t2 = a2 * 0x1b3 + (t1 >>> 16) + (a0 << 8);
    const t3 = a3 * 0x1b3 + (t2 >>> 16) + (a1 << 8);
    a0 = t0 & 0xffff;
    a1 = t1 & 0xffff;
    a2 = t2 & 0xffff;
    a3 = t3 & 0xffff;
  }
  out[at] = ((a1 << 16) | a0) >>> 0;
  out[at + 1] = ((a3 << 16) | a2) >>> 0;
}
