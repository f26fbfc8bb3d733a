import { z } from 'zod';
import { Hex } from './common.js';

export const CoverageQuery = z
  .object({
    reset: z.enum(['true', 'false', '1', '0']).optional().describe('read, then set the count to 0 in one step'),
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

export const CoverageJson = z.union([
  z.object({
    mode: z.literal('pc'),
    count: z.number().int().describe('count word as stored'),
    words: z.number().int(),
    pcs: z.array(Hex).describe('min(count, capacity) PCs'),
  }),
  z.object({
    mode: z.literal('cmp'),
    count: z.number().int(),
    words: z.number().int(),
    cmps: z.array(CmpRecord),
  }),
]);

export const CountBody = z
  .object({ count: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).describe('value written to the count word (cover[0])') })
  .strict();

export const CountReply = z.object({ count: z.number().int(), words: z.number().int() });
