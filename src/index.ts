export { buildApp, type AppOptions } from './http/app.js';
export { loadConfig, type Config } from './config.js';
export { Engine } from './engine/engine.js';
export { Kernel } from './engine/kernel.js';
export { KcovError } from './engine/errno.js';
export * from './client/index.js';
