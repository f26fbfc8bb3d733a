/**
 * 64-bit words without BigInt. A word is two uint32 halves (lo, hi), which is
 * how the areas store it (little-endian) and how the hot paths move it.
 */

const TWO32 = 0x1_0000_0000;
const HEX_RE = /^0[xX]0*([0-9a-fA-F]{1,16})$/;
const HEX_ZERO_RE = /^0[xX]0+$/;
const DEC_RE = /^[0-9]{1,20}$/;
const U64_MAX_DEC = '18446744073709551615';

/** Parsed halves land here, so parsing allocates nothing. */
export const scratch = new Uint32Array(2);

/**
 * Parse a u64 input (hex string with 0x, optionally zero padded; decimal string;
 * or a JSON number that is a non-negative safe integer) into scratch[0..1].
 * Returns false when the value is not a u64.
 */
export function parseU64(value: unknown, out: Uint32Array = scratch, at = 0): boolean {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) return false;
    out[at] = value % TWO32;
    out[at + 1] = Math.floor(value / TWO32);
    return true;
  }
  if (typeof value !== 'string') return false;
  const m = HEX_RE.exec(value);
  if (m !== null) {
    const digits = m[1]!;
    const split = digits.length > 8 ? digits.length - 8 : 0;
    out[at] = parseInt(digits.slice(split), 16);
    out[at + 1] = split > 0 ? parseInt(digits.slice(0, split), 16) : 0;
    return true;
  }
  if (HEX_ZERO_RE.test(value)) {
    out[at] = 0;
    out[at + 1] = 0;
    return true;
  }
  if (!DEC_RE.test(value)) return false;
  const trimmed = value.replace(/^0+(?=.)/, '');
  if (trimmed.length > 20 || (trimmed.length === 20 && trimmed > U64_MAX_DEC)) return false;
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < trimmed.length; i++) {
    lo = lo * 10 + (trimmed.charCodeAt(i) - 48);
    const carry = Math.floor(lo / TWO32);
    lo -= carry * TWO32;
    hi = hi * 10 + carry;
  }
  out[at] = lo;
  out[at + 1] = hi;
  return true;
}

/** A u64 input as a JS number when it is a safe integer, else null. */
export function u64ToSafeNumber(value: unknown): number | null {
  if (!parseU64(value)) return null;
  const n = scratch[1]! * TWO32 + scratch[0]!;
  return Number.isSafeInteger(n) ? n : null;
}

/** A u64 input as a number, saturating at 2^53 (enough to compare with any limit). */
export function u64Clamped(value: unknown): number | null {
  if (!parseU64(value)) return null;
  const hi = scratch[1]!;
  if (hi >= 0x200000) return Number.MAX_SAFE_INTEGER + 1;
  return hi * TWO32 + scratch[0]!;
}

/** Lowercase hex without zero padding, as the wire contract writes 64-bit values. */
export function formatU64(lo: number, hi: number): string {
  if (hi === 0) return '0x' + lo.toString(16);
  return '0x' + hi.toString(16) + (lo >>> 0).toString(16).padStart(8, '0');
}


/** A word's value as a number from its halves (exact below 2^53, as counts always are). */
export function u64Value(lo: number, hi: number): number {
  return hi * TWO32 + lo;
}
