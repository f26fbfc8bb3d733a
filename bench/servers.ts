/**
 * Servers the bench drives, one per child process so the driver and the
 * server each get a core: `node dist/bench/servers.js <kind>` listens on an
 * ephemeral port and reports it over IPC.
 *   kcovd       the real app (buildApp), logger off
 *   raw-sink    node:http copying every request body into one buffer
 *   raw-static  node:http serving one static Buffer (GET /?size=bytes picks it)
 *   fastify     Fastify hello world
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Fastify from 'fastify';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';

const SINK_BYTES = 4 * 1024 * 1024;

async function listenRaw(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<number> {
  const server = createServer({ keepAliveTimeout: 60_000 }, handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function start(kind: string): Promise<number> {
  switch (kind) {
    case 'raw-sink': {
      // The floor for ingestion: read the body, copy it into memory, answer a small JSON.
      const sink = new Uint8Array(SINK_BYTES);
      return listenRaw((req, res) => {
        let at = 0;
        req.on('data', (chunk: Buffer) => {
          if (at + chunk.length > sink.length) at = 0;
          sink.set(chunk, at);
          at += chunk.length;
        });
        req.on('end', () => {
          const body = `{"accepted":${at >>> 3},"dropped":0,"ignored":0,"count":${at >>> 3}}`;
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
      });
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
      await app.listen({ port: 0, host: '127.0.0.1' });
      return (app.server.address() as AddressInfo).port;
    }
    case 'kcovd': {
      const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2', KCOV_MEMORY_LIMIT: '2G', LOG_LEVEL: 'silent' }) });
      await app.listen({ port: 0, host: '127.0.0.1' });
      return (app.server.address() as AddressInfo).port;
    }
    default:
      throw new Error(`unknown server kind ${kind}`);
  }
}

const port = await start(process.argv[2] ?? '');
process.send?.({ port });
// The driver asks for this process's CPU time around each measurement: CPU per
// request is the steadier number when other work shares the machine.
process.on('message', (m: unknown) => {
  if (m === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpu: u.user + u.system });
  }
});
process.on('disconnect', () => process.exit(0));
