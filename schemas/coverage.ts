import { z } from 'zod';
import { Hex } from './common.js';

export const CoverageQuery = z
  .object({
    reset: z.enum(['true', 'false', '1', '0']).optional().describe('read, then set the count to 0 in one step'),
    new: z.enum(['true', 'false', '1', '0']).optional()
      .describe("only the records whose PC is not yet in the kernel's cover union (fleet-wide with KCOV_FLEET_URL), added to it in the same step; combinable with reset"),
    format: z.enum(['binary', 'json', 'text']).optional().describe('overrides the Accept header'),
    mode: z.enum(['pc', 'cmp']).optional().describe("how to read the records; the descriptor's current (or last) mode when absent"),
    wait: z.coerce.number().int().min(0).max(3_600_000).optional()
      .describe('long-poll: milliseconds to wait for the count to differ from `since` (capped at KCOV_MAX_WAIT)'),
    since: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional()
      .describe('long-poll: the count the caller last saw; default the count when the request arrives'),
  })
  .strict();

export const CmpRecord = z.object({
  type: z.number().int(),
  size: z.number().int().describe('operand size in bytes, from the type'),
  const: z.boolean(),
  arg1: Hex,
  arg2: Hex,
  pc: Hex,
});

/** ?new=true adds these. */
const NewFields = {
  new: z.number().int().optional().describe('?new=true: records shown, those whose PC was not yet in the union'),
  seen: z.number().int().optional().describe('?new=true: records of the area whose PC was already in the union'),
};

export const CoverageJson = z.union([
  z.object({
    mode: z.literal('pc'),
    count: z.number().int().describe('count word as stored'),
    words: z.number().int(),
    pcs: z.array(Hex).describe('min(count, capacity) PCs; with ?new=true only the new ones'),
    ...NewFields,
  }),
  z.object({
    mode: z.literal('cmp'),
    count: z.number().int(),
    words: z.number().int(),
    cmps: z.array(CmpRecord),
    ...NewFields,
  }),
]);

export const CountBody = z
  .object({ count: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).describe('value written to the count word (cover[0])') })
  .strict();

export const CountReply = z.object({ count: z.number().int(), words: z.number().int() });
