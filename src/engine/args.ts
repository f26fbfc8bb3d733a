/** Decoding of ioctl arguments as a kernel would read them from a register or copyin. */
import { fail } from './errno.js';
import { parseU64, u64Clamped } from '../wire/u64.js';

/** An unsigned long passed by value; absent means 0. Saturates at 2^53. */
export function ulongArg(arg: unknown, what: string): number {
  if (arg === undefined || arg === null) return 0;
  const n = u64Clamped(arg);
  if (n === null) fail('EINVAL', `${what}: expected an unsigned integer, got ${JSON.stringify(arg)}`);
  return n;
}

/**
 * A mode: the dialect's number or the name "pc" / "cmp". A name maps to the
 * dialect's number; a number reaches the driver's own check unchanged.
 */
export function modeArg(arg: unknown, modes: Readonly<Record<string, number>>, what: string): number {
  if (typeof arg === 'string' && Object.hasOwn(modes, arg)) return modes[arg]!;
  return ulongArg(arg, what);
}

export function objectArg(arg: unknown, what: string): Record<string, unknown> {
  if (typeof arg !== 'object' || arg === null || Array.isArray(arg)) {
    fail('EFAULT', `${what}: expected a JSON object as the argument structure`);
  }
  return arg as Record<string, unknown>;
}

/**
 * An `int` argument: only the low 32 bits of what was passed reach the driver
 * (FreeBSD's `(intptr_t)uap->data`, OpenBSD's copyin of an int). Returns those
 * bits unsigned (`*(u_int *)data`); `| 0` gives the signed int. Negative
 * decimals are accepted, as an int may be negative.
 */
export function int32Arg(arg: unknown, what: string): number {
  if (arg === undefined || arg === null) return 0;
  if (typeof arg === 'number' && Number.isSafeInteger(arg)) return arg >>> 0;
  if (typeof arg === 'string' && /^-[0-9]{1,15}$/.test(arg)) return Number(arg) >>> 0;
  const halves = new Uint32Array(2);
  if (!parseU64(arg, halves, 0)) fail('EINVAL', `${what}: expected an integer, got ${JSON.stringify(arg)}`);
  return halves[0]!;
}

/** An `int` mode: the dialect's name for it, or the int the driver reads. */
export function intModeArg(arg: unknown, modes: Readonly<Record<string, number>>, what: string): number {
  if (typeof arg === 'string' && Object.hasOwn(modes, arg)) return modes[arg]!;
  return int32Arg(arg, what) | 0;
}
