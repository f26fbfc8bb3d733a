/**
 * The wire layer: what the engine, the client and the CLI all need to agree
 * on (u64 text, record layout, site ids, names, the ioctl tables). It imports
 * nothing else of the project (test/architecture.test.ts holds it to that).
 */
export * from './u64.js';
export * from './records.js';
export * from './names.js';
export * from './ioctls.js';
