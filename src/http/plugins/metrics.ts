/**
 * GET /metrics in the Prometheus text format (prom-client). Each app has its
 * own Registry, so tests can build many apps in one process. Engine figures
 * (records per kernel, areas, memory) are read at scrape time; HTTP figures
 * (latency per route, bytes in and out) are recorded by hooks. Process and
 * Node.js figures (prom-client's default metrics: RSS, CPU, heap, GC, handles,
 * event-loop lag) describe the one process, so they are made once and shared
 * by every app's registry.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Transform, pipeline } from 'node:stream';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { z } from 'zod';
import type { Engine } from '../../engine/engine.js';
import type { Fleet } from '../../fleet/fleet.js';
import { isChunkedBody } from './binary.js';
import { encodedLength } from './compress.js';
import { HttpMetrics } from './http-metrics.js';

function bytesIn(req: FastifyRequest): number {
  const n = encodedLength(req) ?? Number(req.headers['content-length']);
  if (Number.isFinite(n) && n > 0) return n;
  return isChunkedBody(req.body) ? req.body.length : 0;
}

const STREAMED = Symbol('kcovd.streamedBytes');

/** Body bytes sent: Content-Length, or what a streamed (compressed) body counted on its way out. */
function bytesOut(reply: FastifyReply): number {
  const n = Number(reply.getHeader('content-length'));
  if (Number.isFinite(n) && n > 0) return n;
  return (reply as unknown as Record<symbol, number | undefined>)[STREAMED] ?? 0;
}

/** A stream body (a compressed reply has no Content-Length) is counted as it flows. */
function countStreamed(_req: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, p: unknown) => void): void {
  // Duck-typed: the compression plugin's streams come from readable-stream, not node:stream.
  const p = payload as { pipe?: unknown; on?: unknown } | null;
  if (p === null || typeof p !== 'object' || typeof p.pipe !== 'function' || typeof p.on !== 'function') return done(null, payload);
  const r = reply as unknown as Record<symbol, number>;
  r[STREAMED] = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      r[STREAMED]! += chunk.length;
      cb(null, chunk);
    },
  });
  pipeline(payload as NodeJS.ReadableStream, counter, () => {});
  done(null, counter);
}

let processRegistry: Registry | undefined;

/**
 * prom-client's default metrics, once per process: each collectDefaultMetrics call
 * starts its own event-loop delay histogram and GC observer that are never stopped,
 * and the observer would keep its registry (and an app's engine) alive.
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
  }
  return processRegistry;
}

export function createMetrics(engine: Engine): Registry {
  const registers = [new Registry()];
  const register = registers[0]!;
  const kernels = () => [...engine.kernels.values()];
  for (const m of processMetrics().getMetricsAsArray()) register.registerMetric(m as unknown as Parameters<Registry["registerMetric"]>[0]);

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
  perKernel('kcovd_cover_pcs', 'Distinct PCs in the cover union of each kernel (this instance).', (k) => k.cover.pcs.size);
  perKernel('kcovd_cover_signal', 'Distinct syzkaller edge signals in the union of each kernel.', (k) => k.cover.signals.size);
  const perKernelCount = (name: string, help: string, value: (k: import('../../engine/kernel.js').Kernel) => number) =>
    new Counter({
      name, help, labelNames: ['kernel'], registers,
      collect() {
        this.reset();
        for (const k of kernels()) this.inc({ kernel: k.name }, value(k));
      },
    });
  perKernelCount('kcovd_cover_new_pcs_total', 'PCs ?new=true reported new, per kernel (rate() of it: new PCs per second).', (k) => k.cover.reported);
  // Samples of that counter taken at scrapes: the newest one at least a minute old is the base of the window.
  const newSamples = new WeakMap<object, { t: number; v: number }[]>();
  perKernel('kcovd_cover_new_pcs_per_minute', 'PCs ?new=true reported new in the last minute, per kernel, from the samples of this endpoint (a window longer than a minute, when scraped less often, is scaled to one; 0 at the first scrape). Prometheus: prefer 60 * rate(kcovd_cover_new_pcs_total[1m]).', (k) => {
    const now = Date.now();
    const v = k.cover.reported;
    let s = newSamples.get(k);
    if (s === undefined) newSamples.set(k, (s = []));
    s.push({ t: now, v });
    while (s.length > 2 && s[1]!.t <= now - 60_000) s.shift();
    if (s.length > 64) s.splice(1, s.length - 64); // scraped often: older samples inside the minute are not needed
    const base = s[0]!;
    const dt = now - base.t;
    return (v - base.v) * (dt > 60_000 ? 60_000 / dt : 1);
  });
  perKernelCount('kcovd_cover_lost_total', 'PCs and signals the memory budget (KCOV_COVER_LIMIT, KCOV_MEMORY_LIMIT) had no room for in the union.', (k) => k.cover.lost);
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

function fleetMetrics(register: Registry, fleet: Fleet): void {
  const registers = [register];
  const g = (name: string, help: string, value: () => number) =>
    new Gauge({ name, help, registers, collect() { this.set(value()); } });
  g('kcovd_fleet_connected', '1 while Redis (KCOV_FLEET_URL) answers; 0: serving from local unions.', () => (fleet.status().connected ? 1 : 0));
  g('kcovd_fleet_pending', 'PCs and signals learnt here and not yet in Redis.', () => fleet.status().pending);
  g('kcovd_fleet_lag_seconds', 'Age of the oldest PC or signal not yet in Redis.', () => fleet.status().lagSeconds);
  const c = (name: string, help: string, value: () => number) =>
    new Counter({ name, help, registers, collect() { this.reset(); this.inc(value()); } });
  c('kcovd_fleet_round_trips_total', 'Redis round trips (pipelined batches) that succeeded.', () => fleet.status().roundTrips);
  c('kcovd_fleet_failures_total', 'Redis round trips that failed (their keys were kept and retried).', () => fleet.status().failures);
  c('kcovd_fleet_round_trip_seconds_total', 'Time the successful Redis round trips took, together (divided by kcovd_fleet_round_trips_total: the mean latency).', () => fleet.status().roundTripSeconds);
  c('kcovd_fleet_resets_total', 'Fleet-wide resets (DELETE /cover on another instance) that emptied a union here.', () => fleet.status().resets);
  const perCorpus = (name: string, help: string, value: (s: { pcs: number; signal: number }) => number) =>
    new Gauge({
      name, help, labelNames: ['corpus'], registers,
      collect() {
        this.reset();
        for (const s of fleet.corpusStatus()) this.set({ corpus: s.corpus }, value(s));
      },
    });
  perCorpus('kcovd_fleet_cover_pcs', 'Distinct PCs in the union of each corpus in Redis (the whole fleet), as of the last round trip.', (s) => s.pcs);
  perCorpus('kcovd_fleet_cover_signal', 'Distinct syzkaller edge signals of each corpus in Redis, as of the last round trip.', (s) => s.signal);
}

export function registerMetrics(app: FastifyInstance, engine: Engine, fleet: Fleet | null = null): Registry {
  const register = createMetrics(engine);
  if (fleet !== null) fleetMetrics(register, fleet);
  // Per-request figures are plain numbers on the request path (http-metrics.ts), read at scrape time.
  const http = new HttpMetrics([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30]);
  http.register(register, {
    latency: ['kcovd_http_request_duration_seconds', 'Time from request to response, per route.'],
    bytesIn: ['kcovd_http_request_bytes_total', 'Request body bytes received, per route.'],
    bytesOut: ['kcovd_http_response_bytes_total', 'Response body bytes sent, per route.'],
  });
  // After the compression plugin's own onSend (per route), so what is counted is what is sent.
  // Each route's own onResponse knows its pattern: no req.routeOptions (an object built on each
  // read) and no label key per request.
  app.addHook('onRoute', (route) => {
    route.onSend = route.onSend === undefined ? [countStreamed] : [...(Array.isArray(route.onSend) ? route.onSend : [route.onSend]), countStreamed];
    const entries = http.route(route.url);
    const observe = (req: FastifyRequest, reply: FastifyReply, done: () => void): void => {
      entries.entry(req.method, reply.statusCode).observe(reply.elapsedTime / 1000, bytesIn(req), bytesOut(reply));
      done();
    };
    route.onResponse = route.onResponse === undefined ? [observe] : [...(Array.isArray(route.onResponse) ? route.onResponse : [route.onResponse]), observe];
  });
  // What no route matched (the not-found handler has no onRoute).
  const unmatched = http.route('unmatched');
  app.addHook('onResponse', (req, reply, done) => {
    if (req.is404) unmatched.entry(req.method, reply.statusCode).observe(reply.elapsedTime / 1000, bytesIn(req), bytesOut(reply));
    done();
  });

  app.get('/metrics', {
    schema: {
      tags: ['service'],
      summary: 'Prometheus metrics (text exposition format)',
      description: 'kcovd_* figures per kernel and per route, and the process: process_resident_memory_bytes, ' +
        'process_cpu_seconds_total, nodejs_heap_size_used_bytes, nodejs_gc_duration_seconds, nodejs_eventloop_lag_seconds ' +
        '(and its p50/p90/p99 from a 10 ms monitor) and the rest of prom-client\'s default metrics.',
      response: { 200: { description: 'the metrics', content: { 'text/plain': { schema: z.string().describe('Prometheus text format 0.0.4') } } } },
    },
  }, async (_req, reply) => {
    // Memory as the kernels hold it: freed areas still waiting for their fold are folded and given back.
    engine.settleFreed();
    const text = await register.metrics();
    return reply.type(register.contentType).send(text);
  });
  return register;
}
