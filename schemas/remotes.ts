import { z } from 'zod';
import { KernelName, Tid, U64 } from './common.js';

export const RemoteParams = z.object({
  kernel: KernelName,
  remote: z.string().min(1).max(64).describe('Linux handle in hex (0x0100000000000001) or BSD subsystem:id (0:4242)'),
});

export const SectionBody = z.union([
  z.object({ handle: U64.describe('Linux remote handle') }).strict(),
  z.object({ subsystem: U64, id: U64 }).strict().describe('BSD remote (subsystem, id)'),
]);

export const RemoteEventsQuery = z
  .object({
    context: z.enum(['task', 'softirq', 'interrupt']).default('task').describe('task: on thread tid; softirq (Linux) / interrupt (OpenBSD): on cpu'),
    tid: z.coerce.number().int().min(1).max(0x7fffffff).optional().describe('task: the thread running the section; softirq/interrupt: the interrupted thread, if any'),
    cpu: z.coerce.number().int().min(0).max(4095).optional().describe('CPU of a softirq/interrupt section'),
    kind: z.enum(['pc', 'cmp']).default('pc').describe('record kind of a binary body'),
  })
  .strict();

export const RemoteList = z.object({ remotes: z.array(z.unknown()) });

export const RemoteRegistered = z.object({ remote: z.string(), created: z.boolean() });

export { Tid };
