import type { Dialect } from '../dialect.js';
import type { DialectName } from '../errno.js';
import { freebsd } from './freebsd.js';
import { linux } from './linux/index.js';
import { netbsd } from './netbsd.js';
import { openbsd } from './openbsd.js';

/** Dialects this build implements; the others are EOPNOTSUPP at kernel creation. */
export const DIALECTS: Partial<Record<DialectName, Dialect>> = {
  linux,
  openbsd,
  netbsd,
  freebsd,
};
