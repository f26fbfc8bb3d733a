/**
 * 64-bit words without BigInt. A word is two uint32 halves (lo, hi), which is
 * how the areas store it (little-endian) and how the hot paths move it.
 */

const TWO32 = 0x1_0000_0000;
const HEX_RE = /^0[xX]0*([0-9a-fA-F]{1,16})$/;
const HEX_ZERO_RE = /^0[xX]0+$/;
const DEC_RE = /^[0-9]{1,20}$/;
/** 2^64 - 1 in decimal: a 20-digit string past it (compared as text) is not a u64. */
export const U64_MAX_DEC = '18446744073709551615';

/** out[at], out[at + 1] = the halves (lo, hi) of v, a non-negative safe integer. */
export function setHalves(out: Uint32Array, at: number, v: number): void {
  out[at] = v % TWO32;
  out[at + 1] = Math.floor(v / TWO32);
}

/** The halves at out[at] become that value × 10 + digit (decimal parsing below 2^64: each step exact in doubles). */
export function timesTenPlus(out: Uint32Array, at: number, digit: number): void {
  const lo = out[at]! * 10 + digit;
  const carry = Math.floor(lo / TWO32);
  out[at] = lo - carry * TWO32;
  out[at + 1] = out[at + 1]! * 10 + carry;
}

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
    setHalves(out, at, value);
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
  out[at] = 0;
  out[at + 1] = 0;
  for (let i = 0; i < trimmed.length; i++) timesTenPlus(out, at, trimmed.charCodeAt(i) - 48);
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
