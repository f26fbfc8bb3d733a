import { z } from 'zod';
import { Dialect, KernelName } from './common.js';
import { MEMORY_CATEGORIES, type MemoryCategory } from '../src/wire/names.js';

export const KernelCreate = z
  .object({
    name: KernelName.optional().describe('kernel name; generated (k1, k2 …) when absent'),
    dialect: Dialect,
    ncpus: z.number().int().min(1).max(1024).optional().describe('CPUs (per-CPU remote areas); KCOV_NCPUS when absent'),
    corpus: KernelName.optional().describe("name of the kernel's cover union in the fleet (KCOV_FLEET_URL): kernels of one corpus share one union; the kernel's name when absent"),
    max_entries: z
      .number()
      .int()
      .min(1)
      .max(0x7fffffff)
      .optional()
      .describe(
        "largest size the size ioctl accepts; mirrors a fleet's real kernels. Linux: never above the dialect's own limit. " +
          'NetBSD: replaces KCOV_BUF_MAX_ENTRIES (256Ki), lower or higher (syzkaller asks 512Ki), and sizes each remote buffer. ' +
          'FreeBSD: the sysctl kern.kcov.max_entries itself (default 1 << 24), so it may be set above or below the default',
      ),
    config: z
      .record(z.string(), z.boolean())
      .optional()
      .describe(
        'build options that change what kcov answers, to mirror a real kernel. Linux: CONFIG_KCOV_ENABLE_COMPARISONS ' +
          '(false: KCOV_TRACE_CMP is ENOTSUPP) and CONFIG_KCOV_UNIQUE (false: KCOV_UNIQUE_ENABLE is ENOTSUPP), both true by default. ' +
          'Other dialects have none; an unknown option is EINVAL',
      ),
  })
  .strict();

export const KernelView = z.object({
  name: z.string(),
  boot: z.string().describe('the kcovd-boot id of this start of the service; a kernel does not outlive it'),
  dialect: Dialect,
  ncpus: z.number().int(),
  descriptors: z.number().int().describe('open descriptors'),
  threads: z.number().int(),
  remotes: z.number().int(),
  memory: z.number().int().describe('bytes held by this kernel’s areas'),
  max_entries: z.number().int().describe('largest size the size ioctl accepts'),
  min_entries: z.number().int().describe('smallest size the size ioctl accepts'),
  config: z.record(z.string(), z.boolean()).describe('build options in force'),
  corpus: z.string().describe("name of the kernel's cover union in the fleet"),
});

const CATEGORY_DOCS: Record<MemoryCategory, string> = {
  areas: 'descriptor areas and NetBSD remote buffers',
  sections: 'Linux remote-section areas (pooled) and per-CPU areas',
  guards: 'KCOV_UNIQUE_ENABLE guard tables (24 bytes a distinct PC at most)',
  remotes: 'remote registry entries',
  threads: 'threads',
  descriptors: 'open descriptors (their areas are under areas)',
  waiters: 'long-poll and barrier waiters',
  cover: 'the cover union (cumulative PCs and signals) and its fleet journal',
  bodies: 'request bodies in flight',
  snapshots: 'snapshot encodings being written',
  pool: 'freed areas kept for reuse (KCOV_AREA_POOL); given back whenever a charge needs the room',
  other: 'charged without a category',
};

export const MemoryUse = z
  .object({
    used: z.number().int().describe('bytes charged against KCOV_MEMORY_LIMIT now: the sum of `by`'),
    limit: z.number().int().describe('KCOV_MEMORY_LIMIT in bytes; an allocation past it fails with ENOMEM'),
    by: z
      .object(Object.fromEntries(MEMORY_CATEGORIES.map((c) => [c, z.number().int().describe(CATEGORY_DOCS[c])])) as Record<MemoryCategory, z.ZodNumber>)
      .describe('bytes charged, per category'),
  })
  .describe('the memory budget everything a client makes the service hold is charged to');

export const KernelList = z.object({ kernels: z.array(KernelView), memory: MemoryUse });
