/**
 * The Fastify application. Plugins load in a fixed order: external
 * (validation, docs) -> app (errors, body parsers) -> routes. Routes are thin:
 * validate with the zod schemas, call the engine, encode.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance, type FastifySerializerCompiler, type FastifyServerOptions } from 'fastify';
import { engineOptions, type Config } from '../config.js';
import { Engine } from '../engine/engine.js';
import { lazyChildLogger } from './lazylog.js';
import { LongPoll } from './longpoll.js';
import { OPEN_ROUTES, authCheck } from './plugins/auth.js';
import { registerBinaryBody } from './plugins/binary.js';
import { registerJsonBody } from './plugins/json-body.js';
import { registerCompression } from './plugins/compress.js';
import { registerDocs } from './plugins/docs.js';
import { clientErrorHandler, closeAfter, frameworkErrors, registerErrors, sendProblem } from './plugins/errors.js';
import { registerLimits, serverOptions, type InFlight } from './plugins/limits.js';
import { registerMetrics } from './plugins/metrics.js';
import { fastSerializerCompiler } from './serializer.js';
import { coverageRoutes } from './routes/coverage.js';
import { cpuRoutes } from './routes/cpus.js';
import { descriptorRoutes } from './routes/descriptors.js';
import { kernelRoutes } from './routes/kernels.js';
import { remoteRoutes } from './routes/remotes.js';
import { serviceRoutes } from './routes/service.js';
import { threadRoutes } from './routes/threads.js';
import { boundedValidatorCompiler } from './validate.js';
import { coverRoutes } from './routes/cover.js';
import type { Fleet } from '../fleet/fleet.js';
import { uiRoutes } from './ui/index.js';

/** Milliseconds without a new batch that count as a pause for the cover union's background fold. */
export const FOLD_IDLE_MS = 20;

export interface AppState {
  /** Set when shutdown starts: /readyz answers 503. */
  draining: boolean;
  /** [I] Sent as `kcovd-boot` on every reply; `if-kcovd-boot` with another value is 412 ESTALE. */
  readonly bootId: string;
  /** The fleet sharing the cover unions (KCOV_FLEET_URL), or null. */
  fleet: Fleet | null;
}

export interface AppOptions {
  config: Config;
  engine?: Engine;
  logger?: FastifyServerOptions['logger'];
  /** Identity of this start of the service (`kcovd-boot`); new each start unless a test pins it. */
  bootId?: string;
  /** Replies' serializer compiler (tests hold the default against zod's with their own). */
  serializerCompiler?: FastifySerializerCompiler<unknown>;
}

declare module 'fastify' {
  interface FastifyInstance {
    engine: Engine;
    appState: AppState;
    longPoll: LongPoll;
    inflight: InFlight;
  }
}

const REQUEST_ID_RE = /^[\w.:@/+=-]{1,128}$/;

/**
 * Fresh request ids: UUIDs of the v4 shape from a random one per start, the last
 * 48 bits counting up (randomUUID() per request is a few % of a small request).
 */
function requestIds(): () => string {
  const base = randomUUID();
  const head = base.slice(0, 24);
  let n = parseInt(base.slice(24), 16);
  return () => {
    n = n >= 0xffff_ffff_ffff ? 0 : n + 1;
    const h = n.toString(16);
    return h.length === 12 ? head + h : head + '000000000000'.slice(h.length) + h;
  };
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const { config } = opts;
  const engine = opts.engine ?? new Engine(engineOptions(config));
  // The cover union folds appended records between requests (src/engine/cover/union.ts).
  // The fold waits for a pause in the traffic (FOLD_IDLE_MS without a batch) so a program
  // streaming its trace does not share the CPU with it; then it runs between requests.
  engine.background ??= (fn, idle) => {
    if (idle) setTimeout(fn, FOLD_IDLE_MS).unref();
    else setImmediate(fn);
  };
  const bootId = opts.bootId ?? randomUUID();
  // ioredis is loaded only when a fleet is configured.
  const fleet = config.fleetUrl === undefined ? null
    : new (await import('../fleet/redis.js')).RedisFleet(engine, { url: config.fleetUrl, cluster: config.fleetCluster, instance: bootId, timeoutMs: config.fleetTimeoutMs, flushMs: config.fleetFlushMs });
  const state: AppState = { draining: false, bootId, fleet };
  const newRequestId = requestIds();

  const app = Fastify({
    logger: opts.logger ?? false,
    // Two lines per request cost more than a small request itself: only when asked (KCOV_LOG_REQUESTS).
    logController: new LogController({ disableRequestLogging: config.logRequests !== true }),
    // req.log's pino child is made on its first line, not for every request.
    childLoggerFactory: opts.logger === undefined || opts.logger === false ? undefined : lazyChildLogger,
    bodyLimit: config.bodyLimit,
    // x-request-id is honoured when it is a sane token, else replaced; genReqId decides.
    requestIdHeader: false,
    genReqId: (req) => {
      const h = req.headers['x-request-id'];
      return typeof h === 'string' && REQUEST_ID_RE.test(h) ? h : newRequestId();
    },
    requestTimeout: config.requestTimeout,
    http: serverOptions(config) as never,
    clientErrorHandler: clientErrorHandler(config.dialect, state.bootId),
    frameworkErrors: frameworkErrors(engine, state.bootId),
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
  app.setValidatorCompiler(boundedValidatorCompiler);
  app.setSerializerCompiler(opts.serializerCompiler ?? fastSerializerCompiler);
  await registerCompression(app, { mode: config.compress, threshold: config.compressThreshold, bodyLimit: config.bodyLimit });
  await registerDocs(app, { docsPublic: config.docsPublic });

  // app
  registerErrors(app, engine);
  registerBinaryBody(app, config.bodyLimit);
  registerJsonBody(app);
  app.decorate('inflight', registerLimits(app, engine, config));
  // One callback-style hook for everything every request pays before routing on: request id and
  // boot id headers, the boot check, draining (before auth: a draining server turns everyone away),
  // then the bearer token. An async hook would cost a promise and a tick; separate hooks a call each.
  const auth = authCheck(engine, config.token);
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id).header('kcovd-boot', state.bootId);
    const boot = req.headers['if-kcovd-boot'];
    if (boot !== undefined && boot !== state.bootId) {
      // A client that outlived a restart must not touch what others opened since.
      return sendProblem(engine, req, reply, 'ESTALE', `if-kcovd-boot ${JSON.stringify(boot)} names another start of the service; this one is ${state.bootId}`);
    }
    if (state.draining && !OPEN_ROUTES.has(req.routeOptions.url ?? '')) {
      closeAfter(reply.header('retry-after', '1'));
      return sendProblem(engine, req, reply, 'EBUSY', 'the server is shutting down', 503);
    }
    if (auth !== undefined && !auth(req, reply)) return;
    done();
  });
  registerMetrics(app, engine, fleet);

  // routes
  await app.register(serviceRoutes, { state });
  await app.register(kernelRoutes, { engine, bootId: state.bootId });
  await app.register(descriptorRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(coverageRoutes, { engine, fleet });
  await app.register(coverRoutes, { engine, fleet });
  await app.register(threadRoutes, { engine });
  await app.register(remoteRoutes, { engine, barrierMs: config.barrierTimeoutMs });
  await app.register(cpuRoutes, { engine });
  await app.register(uiRoutes, { engine, points: config.uiHistory, sampleMs: config.uiSampleMs, maxWait: config.maxWait });

  app.addHook('preClose', async () => {
    state.draining = true;
    longPoll.close();
  });
  app.addHook('onClose', async () => {
    await fleet?.close();
    engine.close();
  });
  return app;
}
