import { z } from 'zod';
import { Hex, Tid } from './common.js';

export const ThreadPut = z
  .object({
    pid: z.number().int().min(1).max(0x7fffffff).optional().describe('process id; the tid itself when absent (a new process)'),
    parent: Tid.optional().describe('the forking thread; the child inherits what the kernel hands on (Linux: the common remote handle)'),
  })
  .strict();

export const ThreadView = z.object({
  tid: z.number().int(),
  pid: z.number().int(),
  fd: z.number().int().nullable().describe('the descriptor this thread is bound to (enabled), or null'),
  handle: Hex.nullable().describe('Linux common remote handle (t->kcov_handle), or null'),
  section: z.unknown().describe('the open remote section, or null'),
  silenced: z.boolean().describe('NetBSD kcov_silence_enter in effect'),
  mode: z.string().describe("the thread's own kcov mode (Linux t->kcov_mode)"),
});

export const ThreadList = z.object({ threads: z.array(ThreadView) });
