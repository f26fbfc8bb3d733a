/**
 * The objects a kernel holds. Field tags say who may change a field:
 *   [I] immutable after construction
 *   [D] only the kernel's dialect (ioctl, close, exit and section hooks)
 *   [K] only the Kernel class and its parts (registries, allocation)
 * Everything runs on the event loop; a request mutates the model synchronously
 * and never across an await, so no field needs a lock.
 *
 * A dialect declares its own types (DialectTypes): its descriptor and thread
 * subclasses, its section shape and its per-kernel state. The common classes
 * are generic over them, so a dialect reads its own fields without a cast.
 */
import type { Area, TraceMode } from './area.js';

/** The types one dialect brings: what its kernel's tables hold. */
export interface DialectTypes {
  readonly descriptor: Descriptor;
  readonly thread: Thread;
  readonly section: Section;
  readonly state: DialectState;
}

/**
 * What a dialect keeps per kernel beyond descriptors, threads and CPUs (its
 * remote registry, Linux's section pools). The kernel creates it once
 * (Dialect.createState) and holds it; nothing of it is module-level.
 */
export interface DialectState {
  /** Remotes registered now, by their canonical key (each dialect narrows the entry type). */
  readonly remotes: ReadonlyMap<string, object>;
  /**
   * Every area this state holds that no descriptor, thread or CPU reaches
   * (pooled section areas, remote buffers): the invariant checker walks them.
   */
  areas(): Iterable<Area>;
}

/** The state of a dialect without remote coverage. */
export class NoRemotes implements DialectState {
  readonly remotes: ReadonlyMap<string, never> = new Map<string, never>();

  areas(): Iterable<Area> {
    return [];
  }
}

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
export abstract class Descriptor<X extends DialectTypes = DialectTypes> {
  /** [I] number in the kernel's fd table; never reused within a kernel. */
  readonly fd: number;
  /** [D] the buffer userspace maps, once sized. */
  area: Area | null = null;
  /** [D] thread whose events this descriptor collects. */
  owner: X['thread'] | null = null;
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

/** An open remote section on a thread or CPU; a dialect may extend it with what it needs at stop. */
export interface Section {
  /** [I] remote key as written on the wire (Linux handle hex or "subsystem:id"). */
  readonly remote: string;
  /** [I] 'task', 'softirq' or 'interrupt'. */
  readonly context: 'task' | 'softirq' | 'interrupt';
  /** [I] where the section records. */
  readonly target: TraceTarget | null;
}

/** The dialect-specific part of a thread's view. */
export interface ThreadExtra {
  /** Linux: the common remote handle (t->kcov_handle). */
  readonly handle: string | null;
  /** NetBSD: kcov_silence_enter is in force. */
  readonly silenced: boolean;
  /** The kernel's name of the thread's kcov mode (Linux t->kcov_mode), else DISABLED / TRACE. */
  readonly mode: string;
}

export class Thread<X extends DialectTypes = DialectTypes> {
  /** [I] */
  readonly tid: number;
  /** [I] process; KIOREMOTEATTACH on OpenBSD keys remotes by it. */
  readonly pid: number;
  /** [D] the descriptor this thread is bound to (Linux t->kcov, OpenBSD p->p_kd ...). */
  kcov: X['descriptor'] | null = null;
  /** [D] where the thread's events go now, or null when not traced. */
  trace: TraceTarget | null = null;
  /** [D] open remote section. */
  section: X['section'] | null = null;

  constructor(tid: number, pid: number) {
    this.tid = tid;
    this.pid = pid;
  }

  /** Dialect-specific fields of the view. */
  extra(): ThreadExtra {
    return { handle: null, silenced: false, mode: this.kcov === null ? 'DISABLED' : 'TRACE' };
  }
}

/** Per-CPU state for remote sections in softirq/interrupt context. */
export class Cpu<X extends DialectTypes = DialectTypes> {
  /** [I] */
  readonly id: number;
  /** [K] allocated on first use and charged to the budget. */
  area: Area | null = null;
  /** [D] the section running on this CPU. */
  section: X['section'] | null = null;

  constructor(id: number) {
    this.id = id;
  }
}
