/**
 * The per-request HTTP metrics are kept as plain numbers (src/http/plugins/http-metrics.ts)
 * and exported in prom-client's shapes: for the same observations the exposition text is
 * what prom-client's own Histogram and Counters write.
 */
import t from 'tap';
import { Counter, Histogram, Registry } from 'prom-client';
import { HttpMetrics } from '../../src/http/plugins/http-metrics.js';

t.test('same text as prom-client for the same observations', async (t) => {
  const bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30];
  const names = {
    latency: ['kcovd_http_request_duration_seconds', 'Time from request to response, per route.'] as [string, string],
    bytesIn: ['kcovd_http_request_bytes_total', 'Request body bytes received, per route.'] as [string, string],
    bytesOut: ['kcovd_http_response_bytes_total', 'Response body bytes sent, per route.'] as [string, string],
  };
  const ref = new Registry();
  const h = new Histogram({ name: names.latency[0], help: names.latency[1], labelNames: ['method', 'route', 'status'], buckets: bounds, registers: [ref] });
  const bi = new Counter({ name: names.bytesIn[0], help: names.bytesIn[1], labelNames: ['route'], registers: [ref] });
  const bo = new Counter({ name: names.bytesOut[0], help: names.bytesOut[1], labelNames: ['route'], registers: [ref] });
  const ours = new Registry();
  const m = new HttpMetrics(bounds);
  m.register(ours, names);
  const obs: Array<[string, string, number, number, number, number]> = [
    ['GET', '/healthz', 200, 0.0001, 0, 15],
    ['POST', '/v1/kernels/:kernel/threads/:tid/events', 200, 0.003, 65536, 60],
    ['POST', '/v1/kernels/:kernel/threads/:tid/events', 400, 0.0005, 7, 200],
    ['POST', '/v1/kernels/:kernel/threads/:tid/events', 200, 0.5, 1024, 60],
    ['GET', 'unmatched', 404, 40, 0, 180],
    ['GET', '/healthz', 200, 0.001, 0, 15],
  ];
  for (const [method, route, status, s, i, o] of obs) {
    h.labels({ method, route, status: String(status) }).observe(s);
    if (i > 0) bi.labels({ route }).inc(i);
    if (o > 0) bo.labels({ route }).inc(o);
    m.entry(method, route, status).observe(s, i, o);
  }
  t.equal(await ours.metrics(), await ref.metrics());
  t.match(await ours.metrics(), /kcovd_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} 2\n/);
});
