/**
 * The Fastify application. Plugins load in a fixed order: external
 * (validation, docs) -> app (errors, body parsers) -> routes. Routes are thin:
 * validate with the zod schemas, call the engine, encode.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Config } from '../config.js';
import { Engine } from '../engine/engine.js';
import { registerBinaryBody } from './plugins/binary.js';
import { registerDocs } from './plugins/docs.js';
import { registerErrors } from './plugins/errors.js';
import { coverageRoutes } from './routes/coverage.js';
import { cpuRoutes } from './routes/cpus.js';
import { descriptorRoutes } from './routes/descriptors.js';
import { kernelRoutes } from './routes/kernels.js';
import { remoteRoutes } from './routes/remotes.js';
import { serviceRoutes } from './routes/service.js';
import { threadRoutes } from './routes/threads.js';

export interface AppState {
  /** Set when shutdown starts: /readyz answers 503. */
  draining: boolean;
}

export interface AppOptions {
  config: Config;
  engine?: Engine;
  logger?: FastifyServerOptions['logger'];
}

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine;
    appState: AppState;
  }
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const engine = opts.engine ?? new Engine({
    dialect: config.dialect,
    ncpus: config.ncpus,
    memoryLimit: config.memoryLimit,
    cpuAreaWords: config.cpuAreaWords,
  });
  const state: AppState = { draining: false };

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: config.bodyLimit,
    requestIdHeader: 'x-request-id',
  });
  app.decorate('engine', engine);
  app.decorate('appState', state);

  // external
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await registerDocs(app);

  // app
  registerErrors(app, engine);
  registerBinaryBody(app, config.bodyLimit);

  // routes
  await app.register(serviceRoutes, { state });
  await app.register(kernelRoutes, { engine });
  await app.register(descriptorRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(coverageRoutes, { engine });
  await app.register(threadRoutes, { engine });
  await app.register(remoteRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(cpuRoutes, { engine });

  app.addHook('onClose', async () => {
    engine.close();
  });
  return app;
}
