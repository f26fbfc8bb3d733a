/**
 * GET /metrics in the Prometheus text format (prom-client). Each app has its
 * own Registry, so tests can build many apps in one process. Engine figures
 * (records per kernel, areas, memory) are read at scrape time; HTTP figures
 * (latency per route, bytes in and out) are recorded by hooks.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine } from '../../engine/engine.js';
import { isChunkedBody } from './binary.js';

/** The route pattern (bounded label set); "unmatched" for 404s. */
function routeOf(req: FastifyRequest): string {
  return req.routeOptions.url ?? 'unmatched';
}

function bytesIn(req: FastifyRequest): number {
  const n = Number(req.headers['content-length']);
  if (Number.isFinite(n) && n > 0) return n;
  return isChunkedBody(req.body) ? req.body.length : 0;
}

function bytesOut(reply: FastifyReply): number {
  const n = Number(reply.getHeader('content-length'));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

export function createMetrics(engine: Engine): Registry {
  const registers = [new Registry()];
  const register = registers[0]!;
  const kernels = () => [...engine.kernels.values()];

  new Counter({
    name: 'kcovd_records_total',
    help: 'Records executed per kernel: accepted (stored), dropped (area full), ignored (not traced).',
    labelNames: ['kernel', 'outcome'],
    registers,
    collect() {
      this.reset();
      for (const k of kernels()) {
        this.inc({ kernel: k.name, outcome: 'accepted' }, k.stats.accepted);
        this.inc({ kernel: k.name, outcome: 'dropped' }, k.stats.dropped);
        this.inc({ kernel: k.name, outcome: 'ignored' }, k.stats.ignored);
      }
    },
  });
  const perKernel = (name: string, help: string, value: (k: import('../../engine/kernel.js').Kernel) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['kernel'],
      registers,
      collect() {
        this.reset();
        for (const k of kernels()) this.set({ kernel: k.name }, value(k));
      },
    });
  perKernel('kcovd_descriptors', 'Open kcov descriptors per kernel.', (k) => k.descriptors.size);
  perKernel('kcovd_threads', 'Threads per kernel.', (k) => k.threads.size);
  perKernel('kcovd_areas', 'Coverage areas allocated per kernel (descriptors, remote and per-CPU areas).', (k) => k.account.liveCount);
  perKernel('kcovd_memory_bytes', 'Bytes held by the coverage areas of each kernel.', (k) => k.memory);
  new Gauge({
    name: 'kcovd_kernels', help: 'Kernels that exist.', registers,
    collect() { this.set(engine.kernels.size); },
  });
  new Gauge({
    name: 'kcovd_memory_used_bytes', help: 'Bytes all coverage areas take together.', registers,
    collect() { this.set(engine.budget.used); },
  });
  new Gauge({
    name: 'kcovd_memory_limit_bytes', help: 'KCOV_MEMORY_LIMIT.', registers,
    collect() { this.set(engine.budget.limit); },
  });
  return register;
}

export function registerMetrics(app: FastifyInstance, engine: Engine): Registry {
  const register = createMetrics(engine);
  const registers = [register];
  const latency = new Histogram({
    name: 'kcovd_http_request_duration_seconds',
    help: 'Time from request to response, per route.',
    labelNames: ['method', 'route', 'status'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers,
  });
  const inBytes = new Counter({
    name: 'kcovd_http_request_bytes_total', help: 'Request body bytes received, per route.', labelNames: ['route'], registers,
  });
  const outBytes = new Counter({
    name: 'kcovd_http_response_bytes_total', help: 'Response body bytes sent, per route.', labelNames: ['route'], registers,
  });

  // Label children are looked up once per (method, route, status): prom-client hashes labels on every call otherwise.
  type Children = { latency: { observe(v: number): void }; in: { inc(v: number): void }; out: { inc(v: number): void } };
  const children = new Map<string, Children>();
  app.addHook('onResponse', (req, reply, done) => {
    const route = routeOf(req);
    const key = `${req.method} ${route} ${reply.statusCode}`;
    let c = children.get(key);
    if (c === undefined) {
      c = {
        latency: latency.labels({ method: req.method, route, status: String(reply.statusCode) }),
        in: inBytes.labels({ route }),
        out: outBytes.labels({ route }),
      };
      children.set(key, c);
    }
    c.latency.observe(reply.elapsedTime / 1000);
    const i = bytesIn(req);
    if (i > 0) c.in.inc(i);
    const o = bytesOut(reply);
    if (o > 0) c.out.inc(o);
    done();
  });

  app.get('/metrics', {
    schema: { tags: ['service'], summary: 'Prometheus metrics (text exposition format)' },
  }, async (_req, reply) => {
    const text = await register.metrics();
    return reply.type(register.contentType).send(text);
  });
  return register;
}
