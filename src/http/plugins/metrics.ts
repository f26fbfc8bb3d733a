/**
 * GET /metrics in the Prometheus text format (prom-client). Each app has its
 * own Registry, so tests can build many apps in one process. Engine figures
 * (records per kernel, areas, memory) are read at scrape time; HTTP figures
 * (latency per route, bytes in and out) are recorded by hooks.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Engine } from '../../engine/engine.js';
import { isChunkedBody } from './binary.js';
import { HttpMetrics } from './http-metrics.js';

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
  // Per-request figures are plain numbers on the request path (http-metrics.ts), read at scrape time.
  const http = new HttpMetrics([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30]);
  http.register(register, {
    latency: ['kcovd_http_request_duration_seconds', 'Time from request to response, per route.'],
    bytesIn: ['kcovd_http_request_bytes_total', 'Request body bytes received, per route.'],
    bytesOut: ['kcovd_http_response_bytes_total', 'Response body bytes sent, per route.'],
  });
  app.addHook('onResponse', (req, reply, done) => {
    http.entry(req.method, routeOf(req), reply.statusCode).observe(reply.elapsedTime / 1000, bytesIn(req), bytesOut(reply));
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
