/**
 * The Fastify application. Plugins load in a fixed order: external
 * (validation, docs) -> app (errors, body parsers) -> routes. Routes are thin:
 * validate with the zod schemas, call the engine, encode.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { engineOptions, type Config } from '../config.js';
import { Engine } from '../engine/engine.js';
import { LongPoll } from './longpoll.js';
import { OPEN_ROUTES, registerAuth } from './plugins/auth.js';
import { registerBinaryBody } from './plugins/binary.js';
import { registerDocs } from './plugins/docs.js';
import { registerErrors, sendProblem } from './plugins/errors.js';
import { registerMetrics } from './plugins/metrics.js';
import { coverageRoutes } from './routes/coverage.js';
import { cpuRoutes } from './routes/cpus.js';
import { descriptorRoutes } from './routes/descriptors.js';
import { kernelRoutes } from './routes/kernels.js';
import { remoteRoutes } from './routes/remotes.js';
import { serviceRoutes } from './routes/service.js';
import { threadRoutes } from './routes/threads.js';
import { uiRoutes } from './ui/index.js';

export interface AppState {
  /** Set when shutdown starts: /readyz answers 503. */
  draining: boolean;
  /** [I] Sent as `kcovd-boot` on every reply; `if-kcovd-boot` with another value is 412 ESTALE. */
  readonly bootId: string;
}

export interface AppOptions {
  config: Config;
  engine?: Engine;
  logger?: FastifyServerOptions['logger'];
  /** Identity of this start of the service (`kcovd-boot`); new each start unless a test pins it. */
  bootId?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine;
    appState: AppState;
    longPoll: LongPoll;
  }
}

const REQUEST_ID_RE = /^[\w.:@/+=-]{1,128}$/;

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const engine = opts.engine ?? new Engine(engineOptions(config));
  const state: AppState = { draining: false, bootId: opts.bootId ?? randomUUID() };

  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: config.bodyLimit,
    // x-request-id is honoured when it is a sane token, else replaced; genReqId decides.
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID_RE.test(h) ? h : randomUUID();
    },
    requestTimeout: config.requestTimeout,
    connectionTimeout: config.connectionTimeout,
    keepAliveTimeout: config.keepAliveTimeout,
    // close() ends idle keep-alive sockets at once and lets in-flight requests finish.
    forceCloseConnections: 'idle',
    // Draining is answered below as problem+json instead.
    return503OnClosing: false,
  });
  const longPoll = new LongPoll(config.maxWait);
  app.decorate('engine', engine);
  app.decorate('appState', state);
  app.decorate('longPoll', longPoll);

  // external
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await registerDocs(app);

  // app
  registerErrors(app, engine);
  registerBinaryBody(app, config.bodyLimit);
  // Callback-style hooks: on every request, an async hook would cost a promise and a tick.
  // One hook for the request id and draining (before auth: a draining server turns everyone away).
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id).header('kcovd-boot', state.bootId);
    const boot = req.headers['if-kcovd-boot'];
    if (boot !== undefined && boot !== state.bootId) {
      // A client that outlived a restart must not touch what others opened since.
      return sendProblem(engine, req, reply, 'ESTALE', `if-kcovd-boot ${JSON.stringify(boot)} names another start of the service; this one is ${state.bootId}`);
    }
    if (!state.draining || OPEN_ROUTES.has(req.routeOptions.url ?? '')) return done();
    reply.header('connection', 'close').header('retry-after', '1');
    sendProblem(engine, req, reply, 'EBUSY', 'the server is shutting down', 503);
  });
  registerAuth(app, engine, config.token);
  registerMetrics(app, engine);

  // routes
  await app.register(serviceRoutes, { state });
  await app.register(kernelRoutes, { engine, bootId: state.bootId });
  await app.register(descriptorRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(coverageRoutes, { engine });
  await app.register(threadRoutes, { engine });
  await app.register(remoteRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(cpuRoutes, { engine });
  await app.register(uiRoutes, { engine, points: config.uiHistory, sampleMs: config.uiSampleMs, maxWait: config.maxWait });

  app.addHook('preClose', async () => {
    state.draining = true;
    longPoll.close();
  });
  app.addHook('onClose', async () => {
    engine.close();
  });
  return app;
}
