/**
 * A dialect is a table of ioctls plus the few rules in which the kernels
 * differ. Everything they share (areas, capacity, drops, fd table, threads,
 * event application) lives in the Kernel and Area classes.
 *
 * A dialect is generic over its own types (DialectTypes): the kernel calls its
 * hooks with the dialect's descriptor and thread subclasses and holds the
 * state object the dialect creates, so no hook casts what it is given.
 */
import type { ErrnoName, DialectName } from './errno.js';
import type { Cpu, DialectTypes, TraceTarget } from './model.js';
import type { Kernel } from './kernel.js';
import type { Area, TraceMode } from './area.js';

export interface IoctlContext<X extends DialectTypes = DialectTypes> {
  readonly kernel: Kernel<X>;
  readonly d: X['descriptor'];
  /** The calling thread: `current` in Linux, `curproc`/`curlwp` in the BSDs. */
  readonly thread: X['thread'];
  /** The argument as sent; each command decodes its own. */
  readonly arg: unknown;
}

export interface Command<X extends DialectTypes = DialectTypes> {
  /** Name in the dialect's header. */
  readonly name: string;
  /** Request number as the header computes it on a 64-bit kernel. */
  readonly nr: number;
  /** Runs the ioctl; returns the ioctl's return value (0). Throws KcovError. */
  run(ctx: IoctlContext<X>): number;
}

export interface DialectLimits {
  /** Smallest and largest size argument the size ioctl accepts (entries or words). */
  readonly minEntries: number;
  readonly maxEntries: number;
}

export interface Dialect<X extends DialectTypes = DialectTypes> {
  readonly name: DialectName;
  /** The ioctls, in the order of the driver's switch. */
  readonly commands: readonly Command<X>[];
  /** Errno of an ioctl request the driver does not know. */
  readonly unknownCommand: ErrnoName;
  /** Errno of mmap before the buffer exists. */
  readonly mmapErrno: ErrnoName;
  /** Size limits of a kernel whose max_entries is `maxEntries` (the dialect's own when undefined). */
  limits(maxEntries: number | undefined): DialectLimits;
  /**
   * Build options of the kernel that change what kcov answers (Linux Kconfig
   * symbols), with their defaults. A kernel may be created with any of them changed.
   */
  readonly config?: Readonly<Record<string, boolean>>;

  /** The dialect's per-kernel state; the kernel calls it once, in its constructor, and holds the result. */
  createState(): X['state'];
  /** A new thread (its dialect fields at their initial values). */
  newThread(tid: number, pid: number): X['thread'];
  /** open("/dev/kcov"). */
  open(kernel: Kernel<X>, fd: number): X['descriptor'];
  /**
   * The last close of the fd. The kernel has already removed it from the fd
   * table. It may throw before changing anything (WouldBlock); the fd then
   * stays open.
   */
  close(kernel: Kernel<X>, d: X['descriptor']): void;
  /** Thread exit hook (kcov_task_exit, kcov_exit, kcov_lwp_free, kcov_thread_dtor). */
  exit(kernel: Kernel<X>, t: X['thread']): void;
  /** fork/clone: what a child inherits. */
  fork(kernel: Kernel<X>, parent: X['thread'], child: X['thread']): void;
  /** Where a thread's task-context events go; defaults to thread.trace. */
  target?(kernel: Kernel<X>, t: X['thread']): TraceTarget | null;
  /** The area the coverage route shows for a descriptor (NetBSD: the remote's). */
  mapped?(kernel: Kernel<X>, d: X['descriptor']): Mapping | null;
  /** Tear down dialect state of a kernel being deleted. */
  destroy?(kernel: Kernel<X>): void;

  // ---- remote coverage (absent: the dialect has none, EOPNOTSUPP) ----------

  /**
   * The canonical key of a remote from its wire forms: a path segment
   * ("0x0100000000000001", "0:4242") or a body ({handle} / {subsystem, id}).
   * EINVAL when malformed for this dialect.
   */
  remoteKey?(kernel: Kernel<X>, spec: RemoteSpec): string;
  /** The kernel side registers a remote (BSD kcov_remote_register); true when new. */
  registerRemote?(kernel: Kernel<X>, key: string): boolean;
  /** The kernel side unregisters it. */
  unregisterRemote?(kernel: Kernel<X>, key: string): void;
  /** kcov_remote_start / kcov_remote_enter on a thread or a CPU. */
  enterSection?(kernel: Kernel<X>, site: SectionSite<X>, key: string): void;
  /**
   * kcov_remote_stop / kcov_remote_leave. What it returns is merged into the
   * one-shot section's reply: Linux the section area's count and `moved`;
   * OpenBSD the records an all-or-nothing interrupt copy (kd_copy) lost.
   */
  leaveSection?(kernel: Kernel<X>, site: SectionSite<X>): SectionLeave | void;
  /** GET /remotes: each remote with its attachment. */
  remotesView?(kernel: Kernel<X>): unknown[];
  /** NetBSD kcov_silence_enter / _leave. */
  silence?(kernel: Kernel<X>, t: X['thread'], on: boolean): void;
}

/** What leaving a section reports, beyond the events' own result. */
export interface SectionLeave {
  /** Count of the section's own area at leave. */
  readonly count?: number | null;
  /** Records the leave appended to the descriptor's area (Linux kcov_move_area); null when discarded. */
  readonly moved?: number | null;
  /** Records accepted into the section but lost when it was copied out (they count as dropped). */
  readonly lost?: number;
}

/** A remote as the wire names it: a path segment, or the body of a section request. */
export type RemoteSpec = string | { readonly handle?: unknown; readonly subsystem?: unknown; readonly id?: unknown };

/**
 * Where a remote section runs: on a thread in task context, or on a CPU in
 * softirq (Linux) / interrupt (OpenBSD) context, interrupting `thread` if given.
 */
export type SectionSite<X extends DialectTypes = DialectTypes> =
  | { readonly context: 'task'; readonly thread: X['thread'] }
  | { readonly context: 'softirq' | 'interrupt'; readonly cpu: Cpu<X>; readonly thread: X['thread'] | null };

/** What the coverage route reads: the mapped area and the trace inside it. */
export interface Mapping {
  readonly area: Area;
  readonly trace: Area;
  readonly mode: TraceMode;
  /** Words of KCOV_UNIQUE_ENABLE's bitmap at the start of the area (0 otherwise). */
  readonly bitmapWords: number;
}

