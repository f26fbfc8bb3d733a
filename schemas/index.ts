export * from './common.js';
export * from './kernels.js';
export * from './descriptors.js';
export * from './threads.js';
export * from './events.js';
export * from './coverage.js';
export * from './remotes.js';
export * from './cpus.js';
