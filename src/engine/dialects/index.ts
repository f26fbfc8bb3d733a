import type { Dialect } from '../dialect.js';
import type { DialectName } from '../errno.js';
import { freebsd } from './freebsd.js';
import { linux } from './linux.js';
import { openbsd } from './openbsd.js';
import { netbsd } from './netbsd.js';

/** Dialects this build implements; the others are EOPNOTSUPP at kernel creation. */
export const DIALECTS: Partial<Record<DialectName, Dialect>> = {
  linux,
  freebsd,
  openbsd,
  netbsd,
};

export const DIALECT_NAMES: readonly DialectName[] = ['linux', 'openbsd', 'netbsd', 'freebsd'];
