/**
 * Linux kernel/kcov.c: the dialect, its command table in the order of
 * kcov_ioctl / kcov_ioctl_locked, and the hooks the kernel calls.
 *   shared.ts  struct kcov, task_struct's kcov fields, the globals, kcov_start/stop/disable/put
 *   task.ts    the ioctls of a task tracing itself
 *   remote.ts  KCOV_REMOTE_ENABLE, kcov_remote_start/stop, kcov_move_area
 */
import type { Command, Dialect, Mapping } from '../../dialect.js';
import { KCOV_REMOTE_ENABLE, enterSection, leaveOnExit, leaveSection, remoteKey, remotesView } from './remote.js';
import { LINUX_MAX_WORDS, LinuxDescriptor, LinuxState, LinuxThread, kcovDisable, kcovPut, type LinuxTypes } from './shared.js';
import { KCOV_DISABLE, KCOV_ENABLE, KCOV_INIT_TRACE, KCOV_RESET_TRACE, KCOV_UNIQUE_ENABLE } from './task.js';
import { DIALECT_WIRE } from '../../../wire/ioctls.js';

export { KCOV_IRQ_AREA_SIZE, KCOV_REMOTE_MAX_HANDLES, kcovCheckHandle, kcovMoveArea } from './remote.js';
export { LINUX_MAX_WORDS, LinuxDescriptor, LinuxState, LinuxThread, type LinuxTypes } from './shared.js';

/** The driver's ioctls, in its order: KCOV_INIT_TRACE and KCOV_REMOTE_ENABLE in kcov_ioctl, the rest in kcov_ioctl_locked. */
export const LINUX_COMMANDS: readonly Command<LinuxTypes>[] = [
  KCOV_INIT_TRACE,
  KCOV_ENABLE,
  KCOV_DISABLE,
  KCOV_REMOTE_ENABLE,
  KCOV_UNIQUE_ENABLE,
  KCOV_RESET_TRACE,
];

export const linux: Dialect<LinuxTypes> = {
  name: 'linux',
  commands: LINUX_COMMANDS,
  unknownCommand: DIALECT_WIRE.linux.unknownIoctl,
  mmapErrno: 'EINVAL',
  limits: (maxEntries) => ({ minEntries: 2, maxEntries: Math.min(LINUX_MAX_WORDS, maxEntries ?? LINUX_MAX_WORDS) }),
  // What syzkaller's kernels build with; switch one off to mirror a kernel without it.
  config: { CONFIG_KCOV_ENABLE_COMPARISONS: true, CONFIG_KCOV_UNIQUE: true },

  createState() {
    return new LinuxState();
  },

  newThread(tid, pid) {
    return new LinuxThread(tid, pid);
  },

  open(_kernel, fd) {
    return new LinuxDescriptor(fd);
  },

  close(kernel, d) {
    // kcov_close: drop the fd's reference; a bound task keeps tracing.
    kcovPut(kernel, d);
  },

  exit(kernel, t) {
    leaveOnExit(kernel, t);
    // kcov_task_exit: an implicit KCOV_DISABLE.
    const d = t.kcov;
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
    const m = t.kcovMode;
    return m === 'TRACE_PC' || m === 'TRACE_CMP' || m === 'UNIQUE_PC' ? t.trace : null;
  },

  mapped(_kernel, d): Mapping | null {
    if (d.area === null) return null;
    return { area: d.area, trace: d.trace()!, mode: d.mode ?? d.lastMode, bitmapWords: d.bitmapWords };
  },

  remoteKey,
  enterSection,
  leaveSection,
  remotesView,
};
