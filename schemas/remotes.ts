import { z } from 'zod';
import { EventReply } from './events.js';
import { Hex, KernelName, Tid, U64 } from './common.js';

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

export const LinuxRemoteView = z
  .object({
    handle: Hex.describe('the registered handle (kcov_remote_add)'),
    common: z.boolean().describe('registered as common_handle (true) or from handles[] (false)'),
    fd: z.number().int().describe('descriptor that registered it (KCOV_REMOTE_ENABLE)'),
    owner: z.number().int().nullable().describe('the enabling thread (kcov->t)'),
    mode: z.enum(['pc', 'cmp']).describe("the descriptor's trace mode (kcov->mode)"),
    area_size: z.number().int().describe("words of each task-context section's own area (kcov->remote_size)"),
    sections: z
      .array(z.object({ context: z.enum(['task', 'softirq']), tid: z.number().int().nullable().optional(), cpu: z.number().int().optional() }))
      .describe('sections open on this handle: task (on thread tid) or softirq (on cpu, interrupting tid)'),
  })
  .describe('Linux: one registered remote handle')
  .meta({ id: 'LinuxRemote' });

export const RemoteList = z.object({
  remotes: z.array(z.union([LinuxRemoteView, z.record(z.string(), z.unknown())])),
});

export const RemoteEventReply = EventReply.extend({
  count: z
    .number()
    .int()
    .nullable()
    .describe("count word of the section's own area at leave (Linux: 0 when the section traced nothing); null when no section ran"),
  moved: z
    .number()
    .int()
    .nullable()
    .optional()
    .describe(
      "Linux: records kcov_remote_stop appended to the descriptor's area (kcov_move_area: clamped to the free space, 0 when full); " +
        'null when the section was discarded (KCOV_DISABLE or re-enable since its start); absent when no section ran ' +
        '(handle not registered, area_size 0, hardirq context, nested start)',
    ),
});

export const RemoteRegistered = z.object({ remote: z.string(), created: z.boolean() });

export { Tid };
