import { z } from 'zod';
import { Hex } from './common.js';

export const CoverQuery = z
  .object({
    format: z.enum(['binary', 'json', 'text']).optional().describe('overrides the Accept header'),
  })
  .strict();

export const CoverJson = z.object({
  count: z.number().int().describe('distinct PCs in the union'),
  signal: z.number().int().describe("distinct edge signals, computed as syzkaller's executor does (write_signal), over every PC-mode trace"),
  pcs: z.array(Hex).describe('the PCs, sorted ascending'),
  corpus: z.string().describe('the union this kernel shares with the fleet'),
  source: z.enum(['local', 'fleet']).describe("fleet: read from Redis (KCOV_FLEET_URL); local: this instance's union (no fleet, or Redis unreachable)"),
  lost: z.number().int().describe('PCs and signals the memory budget (KCOV_COVER_LIMIT, KCOV_MEMORY_LIMIT) had no room for (not in the union)'),
});

export const CoverReset = z.object({ count: z.literal(0), signal: z.literal(0) });
