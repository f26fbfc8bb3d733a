/**
 * The per-request HTTP metrics (latency per method, route and status; bytes
 * in and out per route) without prom-client on the request path. prom-client
 * validates and hashes the labels on every observe, even through a cached
 * labels() child; here a request adds to the plain numbers of its
 * (method, route, status) entry, looked up once per key, and the registry
 * reads them at scrape time in prom-client's own shapes (histogram buckets
 * cumulative with `le`, `_sum`, `_count`; counters per route).
 */
import type { Registry } from 'prom-client';

export class RouteStats {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;
  bytesIn = 0;
  bytesOut = 0;

  constructor(readonly method: string, readonly route: string, readonly status: string, readonly bounds: readonly number[]) {
    this.buckets = new Float64Array(bounds.length + 1);
  }

  observe(seconds: number, inBytes: number, outBytes: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    this.buckets[i]!++;
    this.sum += seconds;
    this.count++;
    this.bytesIn += inBytes;
    this.bytesOut += outBytes;
  }
}

interface Value { labels: Record<string, string | number>; value: number; metricName?: string }

/** The minimal metric interface Registry reads: name, help, type, get(), reset(). */
class View {
  readonly aggregator = 'sum';
  constructor(readonly name: string, readonly help: string, readonly type: 'histogram' | 'counter', private readonly values: () => Value[], private readonly onReset: () => void) {}
  get(): { name: string; help: string; type: string; values: Value[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }
  reset(): void {
    this.onReset();
  }
}

export class HttpMetrics {
  private readonly stats = new Map<string, RouteStats>();
  /** Bumped when the registry resets the figures: cached entries are then stale. */
  generation = 0;

  constructor(private readonly bounds: readonly number[]) {}

  /** The entries of one route, for a hook that knows its route: no key built per request. */
  route(route: string): RouteEntries {
    return new RouteEntries(this, route);
  }

  /** The entry of one (method, route, status); made on first sight. */
  entry(method: string, route: string, status: number): RouteStats {
    const key = `${method} ${route} ${status}`;
    let s = this.stats.get(key);
    if (s === undefined) {
      s = new RouteStats(method, route, String(status), this.bounds);
      this.stats.set(key, s);
    }
    return s;
  }

  register(registry: Registry, names: { latency: [string, string]; bytesIn: [string, string]; bytesOut: [string, string] }): void {
    const all = () => [...this.stats.values()];
    const reset = () => {
      this.stats.clear();
      this.generation++;
    };
    const latency = (): Value[] => {
      const out: Value[] = [];
      const name = names.latency[0];
      for (const s of all()) {
        const labels = { method: s.method, route: s.route, status: s.status };
        let acc = 0;
        for (let i = 0; i < this.bounds.length; i++) {
          acc += s.buckets[i]!;
          out.push({ labels: { le: this.bounds[i]!, ...labels }, value: acc, metricName: `${name}_bucket` });
        }
        out.push({ labels: { le: '+Inf', ...labels }, value: s.count, metricName: `${name}_bucket` });
        out.push({ labels, value: s.sum, metricName: `${name}_sum` });
        out.push({ labels, value: s.count, metricName: `${name}_count` });
      }
      return out;
    };
    const perRoute = (pick: (s: RouteStats) => number) => (): Value[] => {
      const by = new Map<string, number>();
      for (const s of all()) {
        const v = pick(s);
        if (v > 0) by.set(s.route, (by.get(s.route) ?? 0) + v);
      }
      return [...by].map(([route, value]) => ({ labels: { route }, value }));
    };
    const metrics = [
      new View(names.latency[0], names.latency[1], 'histogram', latency, reset),
      new View(names.bytesIn[0], names.bytesIn[1], 'counter', perRoute((s) => s.bytesIn), reset),
      new View(names.bytesOut[0], names.bytesOut[1], 'counter', perRoute((s) => s.bytesOut), reset),
    ];
    for (const m of metrics) registry.registerMetric(m as unknown as Parameters<Registry['registerMetric']>[0]);
  }
}

/** One route's entries; the last (method, status) seen is kept, as most requests repeat it. */
export class RouteEntries {
  private method = '';
  private status = -1;
  private generation = -1;
  private last: RouteStats | undefined;

  constructor(private readonly metrics: HttpMetrics, private readonly url: string) {}

  entry(method: string, status: number): RouteStats {
    const last = this.last;
    if (last !== undefined && status === this.status && method === this.method && this.generation === this.metrics.generation) return last;
    const s = this.metrics.entry(method, this.url, status);
    this.last = s;
    this.method = method;
    this.status = status;
    this.generation = this.metrics.generation;
    return s;
  }
}
