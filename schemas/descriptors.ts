import { z } from 'zod';
import { DIALECT_NAMES } from '../src/wire/names.js';
import { DIALECT_WIRE, ioctlSummary, ioctlsOf } from '../src/wire/ioctls.js';
import { Tid } from './common.js';

export const DescriptorOpen = z
  .object({ tid: Tid.optional().describe('thread that opens the device (created if new); descriptors belong to the kernel') })
  .strict();

export const DescriptorView = z
  .object({
    fd: z.number().int(),
    state: z.string().describe("the driver's own state name: Linux kcov->mode (DISABLED, INIT, TRACE_PC, TRACE_CMP, UNIQUE_PC); OpenBSD NONE/READY/TRACE/DYING; FreeBSD OPEN/READY/RUNNING/DYING; " +
      'NetBSD has no state enum, so it is derived from the kcov_t fields: NOBUF (no buffer yet), READY (buffer, not enabled), ' +
      'ENABLED (kd->enabled), LWPFREE (closed while enabled: kd->lwpfree, freed when the owning LWP exits), ' +
      'REMOTE / REMOTE_ENABLED (kd->remote attached; the remote kd not / is enabled), FREED (kcov_free ran)'),
    mode: z.enum(['pc', 'cmp']).nullable().describe('trace mode while enabled'),
    words: z.number().int().nullable().describe('area size in words (entries), null before the size ioctl'),
    count: z.number().int().nullable().describe('count word as stored, null before the size ioctl'),
    capacity: z.number().int().nullable().describe('records that fit in the current (or last) mode'),
    owner: z.number().int().nullable().describe('tid of the thread this descriptor is bound to'),
    closed: z.boolean().describe('closed, but still held by its tracing thread'),
    remote: z.unknown().describe('remote attachment, or null'),
    bufsize: z.number().int().nullable().optional().describe('freebsd: bytes kcov_alloc allocates, roundup2(entries * 8, PAGE_SIZE 4096); null before KIOSETBUFSIZE'),
    mmappable: z.boolean().optional().describe('freebsd: a real mmap(2) of the fd can succeed (kern_mmap page-rounds the length and kcov_mmap_single wants exactly entries * 8 bytes, so entries must fill whole pages); the coverage route shows the area regardless'),
  })
  .catchall(z.unknown())
  .meta({ id: 'Descriptor' });

export const DescriptorList = z.object({ descriptors: z.array(DescriptorView) });

export const IoctlParams = z.object({
  kernel: z.string(),
  fd: z.coerce.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  cmd: z.string().min(1).max(64).describe("ioctl name or request number, decimal or 0x hex, as the dialect's header defines it on a 64-bit kernel. " +
    DIALECT_NAMES.map((d) => `${d}: ${ioctlsOf(d).map((c) => c.name).join(', ')}`).join('; ')),
});

export const IoctlBody = z
  .object({
    tid: Tid,
    arg: z
      .union([z.number(), z.string(), z.record(z.string(), z.unknown()), z.null()])
      .optional()
      .describe('the argument: a number (size, mode, 0), a mode name "pc"/"cmp", or a struct as an object (KCOV_REMOTE_ENABLE, KIOREMOTEATTACH); absent means 0; OpenBSD: null is a NULL argument pointer (EFAULT)'),
  })
  .strict();

export const IoctlReply = z.object({ ret: z.number().int(), descriptor: DescriptorView });

/** The ioctls of every dialect with their request numbers and arguments, for the route's description (from src/wire/ioctls.ts). */
export function ioctlTableText(): string {
  const dialects = DIALECT_NAMES.map((d) => `${d} (${DIALECT_WIRE[d].header}): ${ioctlSummary(d).join('; ')}.`).join(' ');
  const unknown = DIALECT_NAMES.map((d) => `${d} ${DIALECT_WIRE[d].unknownIoctl}`).join(', ');
  return `${dialects} Unknown requests fail as the dialect's kernel fails them: ${unknown}.`;
}
