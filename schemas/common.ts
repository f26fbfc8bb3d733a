import { z } from 'zod';
import { DIALECT_NAMES, ERRNO_NAMES, KERNEL_NAME_RE } from '../src/wire/names.js';

/** A 64-bit value: 0x hex (any zero padding), a decimal string, or a safe-integer JSON number. */
export const U64 = z
  .union([
    z.string().regex(/^(0[xX][0-9a-fA-F]+|[0-9]+)$/, 'expected 0x hex or decimal digits'),
    z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  ])
  .describe('64-bit unsigned value: "0x…" hex (zero padding allowed), a decimal string, or a JSON number that is a safe integer')
  .meta({ id: 'U64' });

/** A 64-bit value as the service writes it: lowercase hex, no zero padding. */
export const Hex = z.string().regex(/^0x[0-9a-f]+$/).describe('64-bit value as lowercase hex without zero padding').meta({ id: 'Hex' });

export const Tid = z.number().int().min(1).max(0x7fffffff).describe('thread id (the calling thread)');
export const Fd = z.number().int().min(0).describe('file descriptor number in the kernel; never reused');

export const KernelName = z
  .string()
  .regex(KERNEL_NAME_RE)
  .describe('kernel name');

export const Dialect = z.enum(DIALECT_NAMES).describe('kcov ABI of the kernel');

export const ErrnoName = z.enum(ERRNO_NAMES);

export const Problem = z
  .object({
    type: z.string().describe('urn:kcovd:errno:<ERRNO>'),
    title: z.string().describe('strerror() of the errno'),
    status: z.number().int(),
    detail: z.string().describe('what went wrong, naming the kernel rule'),
    errno: ErrnoName.describe("name the dialect's kernel returns"),
    code: z.number().int().describe("the errno's number in that dialect"),
    instance: z.string().optional(),
  })
  .describe('RFC 9457 problem details with the errno the real kernel returns')
  .meta({ id: 'Problem' });

export const KernelParams = z.object({ kernel: KernelName });
export const FdParams = z.object({ kernel: KernelName, fd: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER) });
export const TidParams = z.object({ kernel: KernelName, tid: z.coerce.number().int().min(1).max(0x7fffffff) });

/** Problem responses every route may give, keyed by status. */
export function problems(...statuses: number[]): Record<number, typeof Problem> {
  const out: Record<number, typeof Problem> = {};
  for (const s of statuses) out[s] = Problem;
  return out;
}

export const NoContent = z.undefined().describe('no content');
