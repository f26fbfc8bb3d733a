import type { Dialect } from '../dialect.js';
import type { DialectName } from '../errno.js';
import { freebsd } from './freebsd.js';
import { linuxRemote } from './linux-remote.js';
import { netbsd } from './netbsd.js';
import { openbsd } from './openbsd.js';

/** Dialects this build implements; the others are EOPNOTSUPP at kernel creation. */
export const DIALECTS: Partial<Record<DialectName, Dialect>> = {
  // linux.ts plus its remote coverage (linux-remote.ts).
  linux: linuxRemote,
  openbsd,
  netbsd,
  freebsd,
};
