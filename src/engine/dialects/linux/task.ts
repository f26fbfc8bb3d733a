/**
 * Linux kernel/kcov.c, the ioctls of a task tracing itself: KCOV_INIT_TRACE,
 * KCOV_ENABLE, KCOV_DISABLE, KCOV_UNIQUE_ENABLE (linux-next), KCOV_RESET_TRACE.
 */
import { Area } from '../../area.js';
import { ulongArg } from '../../args.js';
import type { Command } from '../../dialect.js';
import { fail } from '../../errno.js';
import type { TraceTarget } from '../../model.js';
import { LINUX_MAX_WORDS, checkEnable, getMode, kcovDisable, kcovPut, kcovStart, type LinuxDescriptor, type LinuxTypes } from './shared.js';
import { ioctl } from '../../../wire/ioctls.js';

type LinuxCommand = Command<LinuxTypes>;

export const KCOV_INIT_TRACE: LinuxCommand = {
  ...ioctl('linux', 'KCOV_INIT_TRACE'),
  run(ctx) {
    const d = ctx.d;
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
};

export const KCOV_ENABLE: LinuxCommand = {
  ...ioctl('linux', 'KCOV_ENABLE'),
  run(ctx) {
    const d = ctx.d;
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
};

export const KCOV_DISABLE: LinuxCommand = {
  ...ioctl('linux', 'KCOV_DISABLE'),
  run(ctx) {
    const d = ctx.d;
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
};

export const KCOV_UNIQUE_ENABLE: LinuxCommand = {
  ...ioctl('linux', 'KCOV_UNIQUE_ENABLE'),
  run(ctx) {
    // kcov_ioctl_locked without CONFIG_KCOV_UNIQUE: -ENOTSUPP before anything else.
    if (ctx.kernel.config.CONFIG_KCOV_UNIQUE === false) {
      fail('ENOTSUPP', 'KCOV_UNIQUE_ENABLE: this kernel is built without CONFIG_KCOV_UNIQUE');
    }
    const d = ctx.d;
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
};

export const KCOV_RESET_TRACE: LinuxCommand = {
  ...ioctl('linux', 'KCOV_RESET_TRACE'),
  run(ctx) {
    const d = ctx.d;
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
};

/** Zero the unique bitmap (if any) and the trace count. */
export function resetTrace(d: LinuxDescriptor): void {
  if (d.area === null) return;
  if (d.bitmapWords > 0) d.area.u32.fill(0, 0, d.bitmapWords * 2);
  d.trace()!.count = 0;
}
