import { z } from 'zod';

export const CpuView = z.object({
  cpu: z.number().int(),
  words: z.number().int().nullable().describe('size of the per-CPU area in words, null until first used'),
  count: z.number().int().nullable(),
  section: z.unknown().describe('the remote section running on this CPU, or null'),
});

export const CpuList = z.object({ cpus: z.array(CpuView) });
