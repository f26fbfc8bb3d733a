import { z } from 'zod';
import { U64 } from './common.js';

export const CmpEvent = z.union([
  z
    .object({
      size: z.union([z.literal(1), z.literal(2), z.literal(4), z.literal(8)]).describe('operand size in bytes'),
      const: z.boolean().optional().describe('one operand is a compile-time constant (KCOV_CMP_CONST)'),
      arg1: U64,
      arg2: U64,
      pc: U64,
    })
    .strict(),
  z
    .object({
      type: U64.describe('raw type word: KCOV_CMP_SIZE(n) | KCOV_CMP_CONST'),
      arg1: U64,
      arg2: U64,
      pc: U64,
    })
    .strict(),
]);

export const SwitchEvent = z
  .object({
    val: U64,
    size: z.union([z.literal(8), z.literal(16), z.literal(32), z.literal(64)]).describe('operand size in bits'),
    cases: z.array(U64),
    pc: U64,
  })
  .strict();

export const JsonEvents = z
  .object({
    pcs: z.array(U64).optional(),
    cmps: z.array(CmpEvent).optional(),
    switches: z.array(SwitchEvent).optional().describe('each case becomes one const comparison (arg1 = case, arg2 = val)'),
    sites: z.array(z.string().max(4096)).optional().describe('site strings; each becomes the PC FNV-1a-64(site)'),
  })
  .strict()
  .describe('events of one batch, applied in the order the keys appear in the body');

export const EventsQuery = z
  .object({
    kind: z.enum(['pc', 'cmp']).default('pc').describe('record kind of a binary body: pc (1 word) or cmp (4 words: type, arg1, arg2, pc)'),
  })
  .strict();

export const EventReply = z.object({
  accepted: z.number().int().describe('records stored'),
  dropped: z.number().int().describe('records lost to a full area, as the kernel loses them'),
  ignored: z.number().int().describe('records not traced at all (no enabled descriptor, other mode, remote mode, silenced, already seen under KCOV_UNIQUE_ENABLE)'),
  count: z.number().int().nullable().describe('count word of the area written, or null when nothing was traced'),
});
