/** Wire shapes of the dashboard's one API route, GET /v1/history. */
import { z } from 'zod';

export const HistoryQuery = z
  .object({
    after: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional()
      .describe('`seq` of the last reply: only newer samples are returned (0 or absent: every sample held)'),
    wait: z.coerce.number().int().min(0).max(3_600_000).optional()
      .describe('long-poll: milliseconds (capped at KCOV_MAX_WAIT) to wait for a sample newer than `after`'),
  })
  .strict();

export const HistoryReply = z
  .object({
    seq: z.number().int().describe('sequence number of the newest sample (0: none yet); send it back as `after`'),
    sample_ms: z.number().int().describe('sampling period (KCOV_UI_SAMPLE_MS); 0 when sampling is off'),
    points: z.number().int().describe('samples held at most (KCOV_UI_HISTORY); past it every other sample is dropped'),
    t: z.array(z.number()).describe('time of each returned sample, milliseconds since the Unix epoch, ascending'),
    series: z
      .array(
        z.object({
          kernel: z.string(),
          fd: z.number().int().nullable().describe('the descriptor, or null for the kernel (the sum of its descriptors\' counts)'),
          values: z.array(z.number().nullable()).describe('count at each time of `t`; null before the series existed'),
        }),
      )
      .describe('every tracked series: each kernel, then its descriptors by fd'),
    untracked: z.number().int().describe('kernels and descriptors not tracked because KCOV_MEMORY_LIMIT had no room for their history'),
  })
  .meta({ id: 'History' });
