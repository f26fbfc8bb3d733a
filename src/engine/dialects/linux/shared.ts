/**
 * What Linux's task ioctls (task.ts) and remote coverage (remote.ts) share,
 * kernel/kcov.c: struct kcov (LinuxDescriptor), the task_struct kcov fields
 * (LinuxThread), the kernel's globals (LinuxState: kcov_remote_map and
 * kcov_remote_areas), and kcov_start / kcov_stop / kcov_disable / kcov_put.
 *
 * Invariants, each enforced where it is stated:
 *  - kcov->t and t->kcov point at each other or are both NULL (kcovStart/kcovStop);
 *  - the area lives while refs > 0: one ref for the open fd, one while a task
 *    is bound (KCOV_ENABLE takes it, kcov_disable + kcov_put drop it), one per
 *    open remote section (kcov_remote_start takes it, kcov_remote_stop drops it);
 *  - every DISABLE and task exit bumps kcov->sequence so a remote section
 *    started before it is discarded at stop.
 */
import type { Area, TraceMode } from '../../area.js';
import { modeArg } from '../../args.js';
import { fail } from '../../errno.js';
import type { Kernel } from '../../kernel.js';
import { Descriptor, Thread, type DialectState, type Section, type ThreadExtra, type TraceTarget } from '../../model.js';
import { formatU64 } from '../../../wire/u64.js';
import { DIALECT_WIRE } from '../../../wire/ioctls.js';

/** Linux's types. */
export interface LinuxTypes {
  readonly descriptor: LinuxDescriptor;
  readonly thread: LinuxThread;
  readonly section: LinuxSection;
  readonly state: LinuxState;
}

export type LinuxKernel = Kernel<LinuxTypes>;

/** enum kcov_mode, kcov->mode side. */
export type LinuxMode = 'DISABLED' | 'INIT' | 'TRACE_PC' | 'TRACE_CMP' | 'UNIQUE_PC';
/** enum kcov_mode, t->kcov_mode side (adds REMOTE). */
export type LinuxTaskMode = 'DISABLED' | 'TRACE_PC' | 'TRACE_CMP' | 'REMOTE' | 'UNIQUE_PC';

const INT_MAX = 0x7fffffff;
/** KCOV_INIT_TRACE: `size > INT_MAX / sizeof(unsigned long)` is EINVAL. */
export const LINUX_MAX_WORDS = Math.floor(INT_MAX / 8);
export const KCOV_TRACE_PC: number = DIALECT_WIRE.linux.modes.pc;
export const KCOV_TRACE_CMP: number = DIALECT_WIRE.linux.modes.cmp;
export const LINUX_MODES = DIALECT_WIRE.linux.modes;

/** struct kcov. Names follow the kernel: `kmode` is kcov->mode, `refs` is kcov->refcount. */
export class LinuxDescriptor extends Descriptor<LinuxTypes> {
  /** [D] kcov->mode */
  kmode: LinuxMode = 'DISABLED';
  /** [D] kcov->refcount: the fd plus a bound task plus open remote sections. */
  refs = 1;
  /** [D] kcov->sequence, bumped by every kcov_reset (kcov_open starts it at 1). */
  sequence = 1;
  /** [D] kcov->remote and kcov->remote_size (words of each remote section's area). */
  remote = false;
  remoteSize = 0;
  /** [D] handles this descriptor registered (KCOV_REMOTE_ENABLE), as hex. */
  handles: string[] = [];
  commonHandle: string | null = null;
  /** [D] KCOV_UNIQUE_ENABLE's bitmap words; kept after disable so reads keep the layout. */
  bitmapWords = 0;
  private traceWindow: Area | null = null;

  get state(): string {
    return this.kmode;
  }

  get mode(): TraceMode | null {
    if (this.kmode === 'TRACE_PC' || this.kmode === 'UNIQUE_PC') return 'pc';
    if (this.kmode === 'TRACE_CMP') return 'cmp';
    return null;
  }

  override trace(): Area | null {
    if (this.area === null) return null;
    if (this.bitmapWords === 0) return this.area;
    if (this.traceWindow === null || this.traceWindow.base !== this.bitmapWords) {
      this.traceWindow = this.area.window(this.bitmapWords);
    }
    return this.traceWindow;
  }

  override extra(): Record<string, unknown> {
    return {
      sequence: this.sequence,
      remote: this.remote
        ? { area_size: this.remoteSize, handles: this.handles, common_handle: this.commonHandle }
        : null,
      bitmap_words: this.bitmapWords,
    };
  }
}

/** The kcov fields of task_struct. */
export class LinuxThread extends Thread<LinuxTypes> {
  /** [D] t->kcov_mode */
  kcovMode: LinuxTaskMode = 'DISABLED';
  /** [D] t->kcov_sequence */
  sequence = 0;
  /** [D] t->kcov_handle, the common remote handle, as [lo, hi]. */
  handle: [number, number] | null = null;
  /** [D] t->kcov_softirq: a softirq section interrupted this task. */
  kcovSoftirq = false;

  override extra(): ThreadExtra {
    return {
      handle: this.handle === null ? null : formatU64(this.handle[0], this.handle[1]),
      silenced: false,
      mode: this.kcovMode,
    };
  }
}

/** One registered handle: struct kcov_remote. */
export interface LinuxRemote {
  /** [I] canonical hex of the handle. */
  readonly handle: string;
  /** [I] the descriptor that registered it (remote->kcov). */
  readonly d: LinuxDescriptor;
  /** [I] registered as KCOV_REMOTE_ENABLE's common_handle, not from handles[]. */
  readonly common: boolean;
}

/** The task state kcov_remote_softirq_start saves. */
export interface SavedTask {
  readonly kcov: LinuxDescriptor | null;
  readonly trace: TraceTarget | null;
  readonly mode: LinuxTaskMode;
  readonly sequence: number;
}

/** An open remote section and what it needs at stop (the kernel keeps it in task_struct / kcov_percpu_data). */
export interface LinuxSection extends Section {
  readonly d: LinuxDescriptor;
  readonly area: Area;
  /** t->kcov_sequence at start. */
  readonly sequence: number;
  /** softirq: the interrupted thread, and its state saved by kcov_remote_softirq_start. */
  readonly thread: LinuxThread | null;
  readonly saved: SavedTask | null;
}

/** The globals of kernel/kcov.c, per emulated kernel. */
export class LinuxState implements DialectState {
  /** [D] kcov_remote_map: registered handles by canonical hex. */
  readonly remotes = new Map<string, LinuxRemote>();
  /** [D] kcov_remote_areas: free task-context section areas by exact size (never freed, as in the kernel). */
  readonly pool = new Map<number, Area[]>();

  *areas(): Iterable<Area> {
    for (const list of this.pool.values()) yield* list;
  }

  /** kcov_remote_reset: drop every handle `d` registered. */
  removeHandlesOf(d: LinuxDescriptor): void {
    for (const [key, r] of this.remotes) {
      if (r.d === d) this.remotes.delete(key);
    }
    d.handles = [];
    d.commonHandle = null;
  }
}

/** kcov_start: the task now writes into `target` in `mode`. */
export function kcovStart(t: LinuxThread, d: LinuxDescriptor, target: TraceTarget | null, mode: LinuxTaskMode): void {
  t.kcov = d;
  t.trace = target;
  t.kcovMode = mode;
  t.sequence = d.sequence;
}

/** kcov_stop: the task no longer writes anywhere (handle and sequence stay). */
export function kcovStop(t: LinuxThread): void {
  t.kcov = null;
  t.trace = null;
  t.kcovMode = 'DISABLED';
}

/** kcov_task_reset: kcov_stop plus the sequence and the common handle. */
function kcovTaskReset(t: LinuxThread): void {
  kcovStop(t);
  t.sequence = 0;
  t.handle = null;
}

/** kcov_reset: back to INIT, a new sequence so stale remote sections are dropped. */
function kcovReset(d: LinuxDescriptor): void {
  d.owner = null;
  d.kmode = 'INIT';
  d.remote = false;
  d.remoteSize = 0;
  d.sequence++;
}

/** kcov_disable */
export function kcovDisable(kernel: LinuxKernel, t: LinuxThread, d: LinuxDescriptor): void {
  kcovTaskReset(t);
  if (d.remote) kernel.state.removeHandlesOf(d);
  kcovReset(d);
}

/** kcov_put: the last reference frees the area. */
export function kcovPut(kernel: LinuxKernel, d: LinuxDescriptor): void {
  d.refs--;
  if (d.refs > 0) return;
  kernel.state.removeHandlesOf(d);
  kernel.freeArea(d.area);
  d.area = null;
}

/** kcov_get_mode */
export function getMode(arg: unknown, kernel: LinuxKernel): LinuxMode {
  const m = modeArg(arg, LINUX_MODES, 'KCOV_ENABLE mode');
  if (m === KCOV_TRACE_PC) return 'TRACE_PC';
  if (m === KCOV_TRACE_CMP) {
    // #ifdef CONFIG_KCOV_ENABLE_COMPARISONS ... #else return -ENOTSUPP;
    if (kernel.config.CONFIG_KCOV_ENABLE_COMPARISONS === false) {
      fail('ENOTSUPP', 'KCOV_TRACE_CMP: this kernel is built without CONFIG_KCOV_ENABLE_COMPARISONS');
    }
    return 'TRACE_CMP';
  }
  fail('EINVAL', `trace mode ${String(arg)} is neither KCOV_TRACE_PC (0) nor KCOV_TRACE_CMP (1)`);
}

/** The checks KCOV_ENABLE, KCOV_REMOTE_ENABLE and KCOV_UNIQUE_ENABLE share, in the kernel's order. */
export function checkEnable(d: LinuxDescriptor, t: LinuxThread, what: string): void {
  if (d.kmode !== 'INIT' || d.area === null) {
    fail('EINVAL', `${what}: kcov->mode is ${d.kmode}, not INIT (KCOV_INIT_TRACE first, and only once per enable)`);
  }
  if (d.owner !== null || t.kcov !== null) {
    fail('EBUSY', d.owner !== null
      ? `${what}: fd ${d.fd} is already bound to thread ${d.owner.tid}`
      : `${what}: thread ${t.tid} already has a kcov (fd ${t.kcov!.fd})`);
  }
}
