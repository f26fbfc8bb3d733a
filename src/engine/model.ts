/**
 * The objects a kernel holds. Field tags say who may change a field:
 *   [I] immutable after construction
 *   [D] only the kernel's dialect (ioctl, close, exit and section hooks)
 *   [K] only the Kernel class (registries, allocation)
 * Everything runs on the event loop; a request mutates the model synchronously
 * and never across an await, so no field needs a lock.
 */
import type { Area, TraceMode } from './area.js';

/** Per-PC de-duplication of KCOV_UNIQUE_ENABLE: the bitmap at the start of the area. */
export interface UniqueBitmap {
  /** [I] the bitmap words (the first words of the area). */
  readonly bitmap: Area;
  /** [I] bits in the bitmap: bitmap words * 64. */
  readonly bits: number;
  /** [I] the persistent index of a PC (its guard), kernel-wide. */
  readonly indexOf: (lo: number, hi: number) => number;
}

/** Where a thread's events land right now. */
export interface TraceTarget {
  /** [I] the trace window: count word first, then records. */
  readonly area: Area;
  /** [I] records of the other kind are ignored. */
  readonly mode: TraceMode;
  /** [I] set for KCOV_UNIQUE_ENABLE. */
  readonly unique?: UniqueBitmap;
}

/** An open kcov file (or one closed but still held by its tracing thread). */
export abstract class Descriptor {
  /** [I] number in the kernel's fd table; never reused within a kernel. */
  readonly fd: number;
  /** [D] the buffer userspace maps, once sized. */
  area: Area | null = null;
  /** [D] thread whose events this descriptor collects. */
  owner: Thread | null = null;
  /** [K] the fd was closed; the object lives on while a thread still holds it. */
  closed = false;
  /** [D] mode of the records in the area: the last enable's, 'pc' before any. */
  lastMode: TraceMode = 'pc';

  constructor(fd: number) {
    this.fd = fd;
  }

  /** The kernel's own name of the state ("INIT", "TRACE", "RUNNING" ...). */
  abstract get state(): string;
  /** Trace mode while enabled, else null. */
  abstract get mode(): TraceMode | null;

  /** The part of the area that holds the count and records (all of it but for UNIQUE). */
  trace(): Area | null {
    return this.area;
  }

  /** Dialect-specific fields shown with the common ones. */
  extra(): Record<string, unknown> {
    return {};
  }
}

/** An open remote section on a thread or CPU. */
export interface Section {
  /** [I] remote key as written on the wire (Linux handle hex or "subsystem:id"). */
  readonly remote: string;
  /** [I] 'task', 'softirq' or 'interrupt'. */
  readonly context: 'task' | 'softirq' | 'interrupt';
  /** [I] where the section records. */
  readonly target: TraceTarget | null;
  /** [I] dialect data needed at stop (sequence numbers, saved state). */
  readonly data?: unknown;
}

export class Thread {
  /** [I] */
  readonly tid: number;
  /** [I] process; KIOREMOTEATTACH on OpenBSD keys remotes by it. */
  readonly pid: number;
  /** [D] the descriptor this thread is bound to (Linux t->kcov, OpenBSD p->p_kd ...). */
  kcov: Descriptor | null = null;
  /** [D] where the thread's events go now, or null when not traced. */
  trace: TraceTarget | null = null;
  /** [D] Linux: common remote handle (t->kcov_handle) as [lo, hi]. */
  handle: [number, number] | null = null;
  /** [D] open remote section. */
  section: Section | null = null;
  /** [D] NetBSD kcov_silence_enter nesting. */
  silenced = 0;
  /** [D] dialect data that does not deserve a field of its own. */
  data: Record<string, unknown> = {};

  constructor(tid: number, pid: number) {
    this.tid = tid;
    this.pid = pid;
  }
}
