/**
 * Names the wire, the schemas, the engine, the client and the CLI all accept:
 * one list each, from which the types, the zod enums, the config check and
 * the docs derive.
 */

/** The kcov ABIs a kernel may have. */
export const DIALECT_NAMES = ['linux', 'openbsd', 'netbsd', 'freebsd'] as const;
export type DialectName = (typeof DIALECT_NAMES)[number];

/** Errno names a kcov failure is reported by (each dialect gives its own number). */
export const ERRNO_NAMES = [
  'EPERM', 'ENOENT', 'ESRCH', 'ENXIO', 'EBADF', 'ENOMEM', 'EACCES', 'EFAULT', 'EBUSY',
  'EEXIST', 'EINVAL', 'ENOTTY', 'ENOBUFS', 'EOPNOTSUPP', 'ENOTSUPP', 'ETIMEDOUT', 'ESTALE',
  // HTTP-level only (413; 414 and 431): no kcov ioctl returns them.
  'E2BIG', 'ENAMETOOLONG',
] as const;
export type ErrnoName = (typeof ERRNO_NAMES)[number];

export function isDialectName(s: string): s is DialectName {
  return (DIALECT_NAMES as readonly string[]).includes(s);
}

/** Kernel names. */
export const KERNEL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** Reply header naming this start of the service; `if-kcovd-boot` sends it back (412 ESTALE when it changed). */
export const BOOT_HEADER = 'kcovd-boot';
export const IF_BOOT_HEADER = 'if-kcovd-boot';

/**
 * What the memory budget (KCOV_MEMORY_LIMIT) is spent on, as GET /v1/kernels
 * shows it in `memory.by`. The engine charges the first seven; the HTTP layer
 * charges request bodies in flight and snapshot encodings; `other` is whatever
 * was charged without a category.
 */
export const MEMORY_CATEGORIES = [
  'areas', 'sections', 'guards', 'remotes', 'threads', 'descriptors', 'waiters', 'cover', 'bodies', 'snapshots', 'pool', 'other',
] as const;
export type MemoryCategory = (typeof MEMORY_CATEGORIES)[number];
