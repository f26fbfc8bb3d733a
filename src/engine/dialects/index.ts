import type { Dialect } from '../dialect.js';
import type { DialectName } from '../errno.js';
import { linux } from './linux.js';
import { openbsd } from './openbsd.js';

/** Dialects this build implements; the others are EOPNOTSUPP at kernel creation. */
export const DIALECTS: Partial<Record<DialectName, Dialect>> = {
  linux,
  openbsd,
};

export const DIALECT_NAMES: readonly DialectName[] = ['linux', 'openbsd', 'netbsd', 'freebsd'];
