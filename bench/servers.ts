/**
 * Servers the bench drives, one per child process so the driver and the
 * server each get a core: `node dist/bench/servers.js <kind>` listens on an
 * ephemeral port (and, for some kinds, a Unix socket in a fresh temp dir)
 * and reports where over IPC.
 *   kcovd       the real service as `npm start` starts it (src/server.ts start():
 *               its default logging, KCOV_SOCKET listener), log lines to /dev/null
 *   kcovd-nocover  the same with KCOV_COVER=off (no cover union, so no fold): what the union costs
 *   raw-sink    node:http copying every request body into a buffer of its connection (TCP and
 *               Unix socket); POST /events?area=BYTES sizes it as kcovd's area of that connection
 *               is sized, so both sides write the same amount of memory
 *   raw-static  node:http serving one static Buffer (GET /?size=bytes picks it)
 *   fastify     Fastify hello world (GET /), and PUT /x/:a/:b with a JSON body answering a
 *               constant: Fastify's own floor for a request with a body and params; GET /work/:us
 *               is hello world after :us µs of busy work (what any route code costs in the ratio)
 *   <file>#<export>  any other: `export async function x(): Promise<Endpoint>` in dist/bench/<file>
 *               (a case module's own server, without touching this file)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';

export interface Endpoint {
  origin: string;
  /** A Unix socket serving the same app, when the kind has one. */
  socketPath?: string;
}

const SINK_BYTES = 4 * 1024 * 1024;
let tmp: string | undefined;
function socketPath(name: string): string {
  tmp ??= mkdtempSync(join(tmpdir(), 'kcovd-bench-'));
  return join(tmp, name);
}
process.on('exit', () => {
  if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function listenRaw(handler: Handler, unix = false): Promise<Endpoint> {
  const server = createServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (!unix) return { origin };
  const path = socketPath('raw.sock');
  const local = createServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((resolve) => local.listen(path, resolve));
  return { origin, socketPath: path };
}

async function start(kind: string): Promise<Endpoint> {
  switch (kind) {
    case 'raw-sink': {
      // The floor for ingestion: read the body, copy it into memory, answer a small JSON.
      // Buffers outlive connections (a free list), as kcovd's areas outlive the driver's clients:
      // each measurement opens new connections, and a fresh buffer would page-fault on every run.
      const sinks = new WeakMap<object, { buf: Uint8Array; at: number }>();
      const free: Array<{ buf: Uint8Array; at: number }> = [];
      return listenRaw((req, res) => {
        let sink = sinks.get(req.socket);
        if (sink === undefined) {
          const q = req.url?.indexOf('?area=') ?? -1;
          const size = q < 0 ? SINK_BYTES : Number(req.url!.slice(q + 6));
          const i = free.findIndex((f) => f.buf.length === size);
          const got = i >= 0 ? free.splice(i, 1)[0]! : { buf: new Uint8Array(size), at: 0 };
          sinks.set(req.socket, got);
          req.socket.once('close', () => free.push(got));
          sink = got;
        }
        const s = sink;
        let got = 0;
        req.on('data', (chunk: Buffer) => {
          if (s.at + chunk.length > s.buf.length) s.at = 0;
          s.buf.set(chunk, s.at);
          s.at += chunk.length;
          got += chunk.length;
        });
        req.on('end', () => {
          const body = `{"accepted":${got >>> 3},"dropped":0,"ignored":0,"count":${s.at >>> 3}}`;
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
      }, true);
    }
    case 'raw-static': {
      const bodies = new Map<number, Buffer>();
      return listenRaw((req, res) => {
        const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size') ?? 8);
        let body = bodies.get(size);
        if (body === undefined) {
          body = Buffer.alloc(size, 0xa5);
          bodies.set(size, body);
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
        res.end(body);
      });
    }
    case 'fastify': {
      const app = Fastify({ logger: false });
      app.get('/', async () => ({ hello: 'world' }));
      app.get('/work/:us', async (req) => {
        const until = performance.now() + Number((req.params as { us: string }).us) / 1000;
        while (performance.now() < until);
        return { hello: 'world' };
      });
      app.put('/x/:a/:b', (_req, reply) => { reply.header('content-type', 'application/json; charset=utf-8').send('{"count":0,"words":1048576}'); });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return { origin: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
    }
    case 'kcovd':
    case 'kcovd-nocover': {
      // As `npm start` runs it: the default log level and request logging unless the
      // bench's own environment sets them (LOG_LEVEL=silent npm run bench compares).
      const env: Record<string, string> = { KCOV_NCPUS: '2', KCOV_MEMORY_LIMIT: '2G', PORT: '0', HOST: '127.0.0.1', KCOV_SOCKET: socketPath(`${kind}.sock`) };
      for (const k of ['LOG_LEVEL', 'KCOV_LOG_REQUESTS', 'KCOV_COVER']) if (process.env[k] !== undefined) env[k] = process.env[k]!;
      if (kind === 'kcovd-nocover') env.KCOV_COVER = 'off';
      // Imported here: baseline processes do not load kcovd.
      const { loadConfig } = await import('../src/config.js');
      const { start: startKcovd } = await import('../src/server.js');
      const config = loadConfig(env);
      const app = await startKcovd(config);
      return { origin: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, socketPath: config.socket! };
    }
    default: {
      const hash = kind.indexOf('#');
      if (hash < 0) throw new Error(`unknown server kind ${kind}`);
      const mod = (await import(new URL(`./${kind.slice(0, hash)}`, import.meta.url).href)) as Record<string, () => Promise<Endpoint>>;
      const f = mod[kind.slice(hash + 1)];
      if (typeof f !== 'function') throw new Error(`server kind ${kind}: no such export`);
      return f();
    }
  }
}

const endpoint = await start(process.argv[2] ?? '');
process.send?.({ endpoint });
// The driver asks for this process's CPU time around each measurement: CPU per
// request is the steadier number when other work shares the machine.
process.on('message', (m: unknown) => {
  if (m === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpu: u.user + u.system });
  }
});
process.on('disconnect', () => process.exit(0));
