/**
 * Errno names and numbers per dialect. A kcov failure is always reported by
 * name; the number is the one the kernel of that dialect would put in errno.
 */

import type { DialectName, ErrnoName } from '../wire/names.js';

export type { DialectName, ErrnoName } from '../wire/names.js';

const COMMON: Record<string, number> = {
  EPERM: 1, ENOENT: 2, ESRCH: 3, ENXIO: 6, EBADF: 9, ENOMEM: 12, EACCES: 13,
  EFAULT: 14, EBUSY: 16, EEXIST: 17, EINVAL: 22, ENOTTY: 25,
};

// Where the BSDs and Linux part ways (asm-generic/errno.h vs sys/errno.h).
const LINUX: Record<string, number> = {
  ...COMMON, ENOBUFS: 105, EOPNOTSUPP: 95, ETIMEDOUT: 110, ESTALE: 116,
  // Kernel-internal (include/linux/errno.h); what userspace sees for CMP without
  // CONFIG_KCOV_ENABLE_COMPARISONS.
  ENOTSUPP: 524,
};
const BSD: Record<string, number> = {
  ...COMMON, ENOBUFS: 55, EOPNOTSUPP: 45, ENOTSUPP: 45, ETIMEDOUT: 60, ESTALE: 70,
};

export function errnoCode(name: ErrnoName, dialect: DialectName = 'linux'): number {
  return (dialect === 'linux' ? LINUX : BSD)[name] ?? 0;
}

const MESSAGES: Record<ErrnoName, string> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  ENXIO: 'Device not configured',
  EBADF: 'Bad file descriptor',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EFAULT: 'Bad address',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EINVAL: 'Invalid argument',
  ENOTTY: 'Inappropriate ioctl for device',
  ENOBUFS: 'No buffer space available',
  EOPNOTSUPP: 'Operation not supported',
  ENOTSUPP: 'Operation not supported',
  ETIMEDOUT: 'Operation timed out',
  ESTALE: 'Stale file handle',
};

export function strerror(name: ErrnoName): string {
  return MESSAGES[name];
}

/** The one error type the engine throws: what the kernel would return. */
export class KcovError extends Error {
  readonly errno: ErrnoName;
  constructor(errno: ErrnoName, detail: string) {
    super(detail);
    this.name = 'KcovError';
    this.errno = errno;
  }
}

export function fail(errno: ErrnoName, detail: string): never {
  throw new KcovError(errno, detail);
}

/**
 * A kernel operation that would sleep (OpenBSD kr_barrier: sections of a
 * remote still open). Thrown before anything changes, so the caller may retry
 * it; uncaught it reads as ETIMEDOUT, a wait of zero that ran out.
 */
export class WouldBlock extends KcovError {
  constructor(detail: string) {
    super('ETIMEDOUT', detail);
    this.name = 'WouldBlock';
  }
}
