/** kcovd client: typed routes, problem errors, BigInt-free coverage views and an event batcher. */
export * from './client.js';
export { KcovdError, KcovdRestartedError, isKcovdError, type Errno, type ProblemBody } from './errors.js';
export { CoverageSnapshot, type CmpView } from './snapshot.js';
export { EventBatcher, type BatcherOptions, type BatcherTotals, type U64Input } from './batcher.js';
export { DIALECT_NAMES, ERRNO_NAMES, DIALECT_WIRE, ioctlsOf, type DialectName, type ErrnoName, type IoctlName, type IoctlDef } from '../wire/index.js';
