/**
 * Linux kernel/kcov.c. Names follow the kernel: a descriptor's `kmode` is
 * kcov->mode, a thread's data.kcovMode is t->kcov_mode, `refs` is kcov->refcount.
 *
 * Invariants, each enforced where it is stated:
 *  - kcov->t and t->kcov point at each other or are both NULL (kcovStart/kcovStop);
 *  - the area lives while refs > 0: one ref for the open fd, one while a task
 *    is bound (KCOV_ENABLE takes it, kcov_disable + kcov_put drop it);
 *  - every DISABLE and task exit bumps kcov->sequence so a remote section
 *    started before it is discarded at stop.
 */
import { Area, type TraceMode } from '../area.js';
import { modeArg, ulongArg } from '../args.js';
import type { Command, Dialect, IoctlContext, Mapping } from '../dialect.js';
import { fail } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { Descriptor, type Thread, type TraceTarget } from '../model.js';
import { DIALECT_WIRE, ioctl } from '../../wire/ioctls.js';

/** enum kcov_mode, kcov->mode side. */
export type LinuxMode = 'DISABLED' | 'INIT' | 'TRACE_PC' | 'TRACE_CMP' | 'UNIQUE_PC';
/** enum kcov_mode, t->kcov_mode side (adds REMOTE). */
export type LinuxTaskMode = 'DISABLED' | 'TRACE_PC' | 'TRACE_CMP' | 'REMOTE' | 'UNIQUE_PC';

const INT_MAX = 0x7fffffff;
/** KCOV_INIT_TRACE: `size > INT_MAX / sizeof(unsigned long)` is EINVAL. */
export const LINUX_MAX_WORDS = Math.floor(INT_MAX / 8);
export const KCOV_TRACE_PC: number = DIALECT_WIRE.linux.modes.pc;
export const KCOV_TRACE_CMP: number = DIALECT_WIRE.linux.modes.cmp;

export class LinuxDescriptor extends Descriptor {
  /** [D] kcov->mode */
  kmode: LinuxMode = 'DISABLED';
  /** [D] kcov->refcount: the fd plus a bound task. */
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

export function taskMode(t: Thread): LinuxTaskMode {
  return (t.data.kcovMode as LinuxTaskMode | undefined) ?? 'DISABLED';
}

/** kcov_start: the task now writes into `area` in `mode`. */
export function kcovStart(t: Thread, d: LinuxDescriptor, target: TraceTarget | null, mode: LinuxTaskMode): void {
  t.kcov = d;
  t.trace = target;
  t.data.kcovMode = mode;
  t.data.sequence = d.sequence;
}

/** kcov_stop: the task no longer writes anywhere (handle and sequence stay). */
export function kcovStop(t: Thread): void {
  t.kcov = null;
  t.trace = null;
  t.data.kcovMode = 'DISABLED';
}

/** kcov_task_reset: kcov_stop plus the sequence and the common handle. */
function kcovTaskReset(t: Thread): void {
  kcovStop(t);
  t.data.sequence = 0;
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

/** Hooks the remote-coverage part plugs in (kcov_remote_reset and friends). */
export interface LinuxRemoteHooks {
  /** Remove every handle `d` registered. */
  reset(kernel: Kernel, d: LinuxDescriptor): void;
}

let remoteHooks: LinuxRemoteHooks = {
  reset(_kernel, d) {
    d.handles = [];
    d.commonHandle = null;
  },
};

export function setLinuxRemoteHooks(h: LinuxRemoteHooks): void {
  remoteHooks = h;
}

/** kcov_disable */
export function kcovDisable(kernel: Kernel, t: Thread, d: LinuxDescriptor): void {
  kcovTaskReset(t);
  if (d.remote) remoteHooks.reset(kernel, d);
  kcovReset(d);
}

/** kcov_put: the last reference frees the area. */
export function kcovPut(kernel: Kernel, d: LinuxDescriptor): void {
  d.refs--;
  if (d.refs > 0) return;
  remoteHooks.reset(kernel, d);
  kernel.freeArea(d.area);
  d.area = null;
}

function linuxDescriptor(ctx: IoctlContext): LinuxDescriptor {
  return ctx.d as LinuxDescriptor;
}

/** kcov_get_mode */
export function getMode(arg: unknown, kernel: Kernel): LinuxMode {
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

export const LINUX_MODES = DIALECT_WIRE.linux.modes;

/** The checks KCOV_ENABLE, KCOV_REMOTE_ENABLE and KCOV_UNIQUE_ENABLE share, in the kernel's order. */
export function checkEnable(d: LinuxDescriptor, t: Thread, what: string): void {
  if (d.kmode !== 'INIT' || d.area === null) {
    fail('EINVAL', `${what}: kcov->mode is ${d.kmode}, not INIT (KCOV_INIT_TRACE first, and only once per enable)`);
  }
  if (d.owner !== null || t.kcov !== null) {
    fail('EBUSY', d.owner !== null
      ? `${what}: fd ${d.fd} is already bound to thread ${d.owner.tid}`
      : `${what}: thread ${t.tid} already has a kcov (fd ${t.kcov!.fd})`);
  }
}

export const LINUX_COMMANDS: Command[] = [
  {
    ...ioctl('linux', 'KCOV_INIT_TRACE'),
    run(ctx) {
      const d = linuxDescriptor(ctx);
      const size = ulongArg(ctx.arg, 'KCOV_INIT_TRACE size');
      const max = Math.min(LINUX_MAX_WORDS, ctx.kernel.maxEntries ?? LINUX_MAX_WORDS);
      // kcov_ioctl: checked before the lock; the kernel's limit is INT_MAX / sizeof(long).
      if (size < 2 || size > max) fail('EINVAL', `KCOV_INIT_TRACE: size ${size} words is outside 2..${max}`);
      // vmalloc_user happens before the mode check, so ENOMEM wins over EBUSY.
      const area = ctx.kernel.allocArea(size, `KCOV_INIT_TRACE(${size})`);
      if (d.kmode !== 'DISABLED') {
        ctx.kernel.freeArea(area);
        fail('EBUSY', `KCOV_INIT_TRACE: already initialised (kcov->mode is ${d.kmode})`);
      }
      d.area = area;
      d.kmode = 'INIT';
      return 0;
    },
  },
  {
    ...ioctl('linux', 'KCOV_ENABLE'),
    run(ctx) {
      const d = linuxDescriptor(ctx);
      checkEnable(d, ctx.thread, 'KCOV_ENABLE');
      const mode = getMode(ctx.arg, ctx.kernel);
      d.kmode = mode;
      d.bitmapWords = 0;
      d.lastMode = mode === 'TRACE_CMP' ? 'cmp' : 'pc';
      kcovStart(ctx.thread, d, { area: d.area!, mode: d.lastMode }, mode === 'TRACE_CMP' ? 'TRACE_CMP' : 'TRACE_PC');
      d.owner = ctx.thread;
      d.refs++;
      return 0;
    },
  },
  {
    ...ioctl('linux', 'KCOV_DISABLE'),
    run(ctx) {
      const d = linuxDescriptor(ctx);
      const unused = ulongArg(ctx.arg, 'KCOV_DISABLE argument');
      if (unused !== 0 || ctx.thread.kcov !== d) {
        fail('EINVAL', unused !== 0
          ? 'KCOV_DISABLE: argument must be 0'
          : `KCOV_DISABLE: thread ${ctx.thread.tid} is not the one this fd traces`);
      }
      if (d.owner !== ctx.thread) fail('EINVAL', 'KCOV_DISABLE: kcov->t != current');
      kcovDisable(ctx.kernel, ctx.thread, d);
      kcovPut(ctx.kernel, d);
      return 0;
    },
  },
  {
    ...ioctl('linux', 'KCOV_UNIQUE_ENABLE'),
    run(ctx) {
      // kcov_ioctl_locked without CONFIG_KCOV_UNIQUE: -ENOTSUPP before anything else.
      if (ctx.kernel.config.CONFIG_KCOV_UNIQUE === false) {
        fail('ENOTSUPP', 'KCOV_UNIQUE_ENABLE: this kernel is built without CONFIG_KCOV_UNIQUE');
      }
      const d = linuxDescriptor(ctx);
      const words = ulongArg(ctx.arg, 'KCOV_UNIQUE_ENABLE bitmap words');
      checkEnable(d, ctx.thread, 'KCOV_UNIQUE_ENABLE');
      const size = d.area!.words;
      // "the bitmap must leave at least two words for the trace"
      if (words === 0 || words >= size - 1) {
        fail('EINVAL', `KCOV_UNIQUE_ENABLE: ${words} bitmap words leave no room for a trace in ${size} words`);
      }
      d.kmode = 'UNIQUE_PC';
      d.bitmapWords = words;
      d.lastMode = 'pc';
      const k = ctx.kernel;
      const target: TraceTarget = {
        area: d.trace()!,
        mode: 'pc',
        unique: {
          bitmap: new Area(d.area!.buffer, d.area!.base, words),
          bits: words * 64,
          indexOf: (lo, hi) => k.guardIndex(lo, hi),
        },
      };
      kcovStart(ctx.thread, d, target, 'UNIQUE_PC');
      d.owner = ctx.thread;
      d.refs++;
      return 0;
    },
  },
  {
    ...ioctl('linux', 'KCOV_RESET_TRACE'),
    run(ctx) {
      const d = linuxDescriptor(ctx);
      const unused = ulongArg(ctx.arg, 'KCOV_RESET_TRACE argument');
      if (unused !== 0 || ctx.thread.kcov !== d) {
        fail('EINVAL', unused !== 0
          ? 'KCOV_RESET_TRACE: argument must be 0'
          : `KCOV_RESET_TRACE: thread ${ctx.thread.tid} is not the one this fd traces`);
      }
      if (d.owner !== ctx.thread) fail('EINVAL', 'KCOV_RESET_TRACE: kcov->t != current');
      if (d.kmode === 'DISABLED' || d.kmode === 'INIT') {
        fail('EINVAL', `KCOV_RESET_TRACE: kcov->mode ${d.kmode} is below KCOV_MODE_TRACE_PC`);
      }
      resetTrace(d);
      return 0;
    },
  },
];

/** Zero the unique bitmap (if any) and the trace count. */
export function resetTrace(d: LinuxDescriptor): void {
  if (d.area === null) return;
  if (d.bitmapWords > 0) d.area.u32.fill(0, 0, d.bitmapWords * 2);
  d.trace()!.count = 0;
}

export const linux: Dialect = {
  name: 'linux',
  commands: LINUX_COMMANDS,
  unknownCommand: DIALECT_WIRE.linux.unknownIoctl,
  mmapErrno: 'EINVAL',
  modes: LINUX_MODES,
  limits: (kernel) => ({ minEntries: 2, maxEntries: Math.min(LINUX_MAX_WORDS, kernel.maxEntries ?? LINUX_MAX_WORDS) }),
  // What syzkaller's kernels build with; switch one off to mirror a kernel without it.
  config: { CONFIG_KCOV_ENABLE_COMPARISONS: true, CONFIG_KCOV_UNIQUE: true },

  open(_kernel, fd) {
    return new LinuxDescriptor(fd);
  },

  close(kernel, d) {
    // kcov_close: drop the fd's reference; a bound task keeps tracing.
    kcovPut(kernel, d as LinuxDescriptor);
  },

  exit(kernel, t) {
    // kcov_task_exit: an implicit KCOV_DISABLE.
    const d = t.kcov as LinuxDescriptor | null;
    if (d === null) return;
    if (d.owner !== t) return;
    kcovDisable(kernel, t, d);
    kcovPut(kernel, d);
  },

  fork(_kernel, parent, child) {
    // kcov_task_init: the child starts without kcov but with the common handle.
    child.handle = parent.handle;
  },

  target(_kernel, t) {
    // check_kcov_mode: REMOTE means the task's own code is not traced.
    const m = taskMode(t);
    return m === 'TRACE_PC' || m === 'TRACE_CMP' || m === 'UNIQUE_PC' ? t.trace : null;
  },

  mapped(_kernel, d): Mapping | null {
    const ld = d as LinuxDescriptor;
    if (ld.area === null) return null;
    return { area: ld.area, trace: ld.trace()!, mode: ld.mode ?? ld.lastMode, bitmapWords: ld.bitmapWords };
  },
};
