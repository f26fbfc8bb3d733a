/**
 * The load driver every server gets: undici Clients, one connection each,
 * a fixed number of requests in flight, for a fixed time. Bodies are drained
 * completely so a large response costs what it costs.
 */
import { Client } from 'undici';

export interface Job {
  method: 'GET' | 'POST' | 'PUT';
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export interface Load {
  /** Connections; each runs its own sequence of jobs. */
  connections: number;
  /** Requests in flight per connection (HTTP/1.1 pipelining when > 1). */
  pipelining: number;
  durationMs: number;
  /**
   * The job sequence of connection `c`: called with the request number n on
   * that connection. Jobs flagged `extra` (housekeeping such as a count
   * reset) are sent but not counted as work done.
   */
  job: (c: number, n: number) => Job & { extra?: boolean };
}

/** Where a load goes: a TCP origin, or a Unix socket (origin then only names the Host header). */
export interface Target {
  origin: string;
  socketPath?: string;
}

export interface Result {
  /** Counted requests per second. */
  rps: number;
  /** Response bytes per second (counted requests only). */
  bytesPerSec: number;
  errors: number;
}

async function drain(body: AsyncIterable<Buffer>): Promise<number> {
  let n = 0;
  for await (const chunk of body) n += chunk.length;
  return n;
}

export async function run(target: Target, load: Load): Promise<Result> {
  const clients = Array.from({ length: load.connections }, () =>
    new Client(target.origin, {
      pipelining: load.pipelining, keepAliveTimeout: 60_000, bodyTimeout: 30_000, headersTimeout: 30_000,
      ...(target.socketPath === undefined ? {} : { socketPath: target.socketPath }),
    }));
  let counted = 0;
  let bytes = 0;
  let errors = 0;
  let stop = false;
  const started = performance.now();
  const loops: Promise<void>[] = [];
  for (let c = 0; c < load.connections; c++) {
    const client = clients[c]!;
    const seq = { n: 0 };
    for (let p = 0; p < load.pipelining; p++) {
      loops.push((async () => {
        while (!stop) {
          const job = load.job(c, seq.n++);
          const res = await client.request({ method: job.method, path: job.path, headers: job.headers, body: job.body });
          const got = await drain(res.body);
          if (res.statusCode >= 300) {
            errors++;
            if (errors === 1) process.stderr.write(`bench: ${job.method} ${job.path} -> ${res.statusCode}\n`);
          }
          if (job.extra !== true) {
            counted++;
            bytes += got;
          }
        }
      })());
    }
  }
  await new Promise((r) => setTimeout(r, load.durationMs));
  stop = true;
  await Promise.all(loops);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.close()));
  return { rps: counted / seconds, bytesPerSec: bytes / seconds, errors };
}
