/** Entry point: configuration, listen, graceful shutdown. */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { loadConfig, type Config } from './config.js';
import { buildApp } from './http/app.js';
import { clientErrorHandler, writeRawProblem } from './http/plugins/errors.js';
import { RETRY_AFTER, serverOptions } from './http/plugins/limits.js';

/** A socket file left by an earlier run is removed; any other file there is an error. */
function clearStaleSocket(path: string): void {
  if (!existsSync(path)) return;
  if (!lstatSync(path).isSocket()) throw new Error(`KCOV_SOCKET: ${path} exists and is not a socket`);
  unlinkSync(path);
}

/** The same app on a second listener: Fastify's routing, hooks and limits serve both. */
function unixListener(app: Awaited<ReturnType<typeof buildApp>>, config: Config, path: string) {
  const server = createServer(serverOptions(config), (req, res) => app.routing(req, res));
  server.on('clientError', clientErrorHandler(config.dialect, app.appState.bootId));
  app.addHook('onClose', async () => {
    server.closeIdleConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try { unlinkSync(path); } catch { /* already gone */ }
  });
  return {
    server,
    listen: () => {
      clearStaleSocket(path);
      return new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          app.log.info({ socket: path }, 'listening on the Unix socket');
          resolve();
        });
      });
    },
  };
}

/** Every open connection of a listener, for the shutdown deadline. */
function trackConnections(server: Server): Set<Socket> {
  const open = new Set<Socket>();
  server.on('connection', (sock: Socket) => {
    open.add(sock);
    sock.once('close', () => open.delete(sock));
  });
  return open;
}

/**
 * The shutdown deadline: a request still unanswered (a stalled upload) gets
 * 503 EBUSY with Retry-After on its socket; everything else is closed.
 */
function answerStalled(sockets: Iterable<Socket>, config: Config, bootId: string): number {
  let n = 0;
  for (const sock of sockets) {
    const res = (sock as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (res !== undefined && res !== null && !res.headersSent) {
      writeRawProblem(sock, config.dialect, bootId, 'EBUSY', `the server shut down before this request was complete (KCOV_SHUTDOWN_TIMEOUT ${config.shutdownTimeout} ms)`, 503, { 'retry-after': RETRY_AFTER });
      n++;
    } else if (res === undefined || res === null) {
      sock.destroy();
    }
    // A reply being written is left to finish while the process winds down.
  }
  return n;
}

export async function start(config: Config) {
  const app = await buildApp({ config, logger: { level: config.logLevel } });
  const unix = config.socket === undefined ? undefined : unixListener(app, config, config.socket);
  await app.listen({ port: config.port, host: config.host });
  if (unix !== undefined) await unix.listen();
  const sockets = [trackConnections(app.server), ...(unix === undefined ? [] : [trackConnections(unix.server)])];
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    // 1. Draining: /readyz is 503, new requests get 503 EBUSY; in-flight ones go on.
    app.appState.draining = true;
    // Waiting long-polls answer now, with the area as it is.
    app.longPoll.close();
    app.log.info({ signal, grace: config.shutdownGrace, timeout: config.shutdownTimeout }, 'draining');
    const started = Date.now();
    // 3. The deadline: stalled requests are answered 503, then the process exits 0.
    const deadline = setTimeout(() => {
      const stalled = answerStalled(sockets.flatMap((s) => [...s]), config, app.appState.bootId);
      app.log.warn({ stalled, timeout: config.shutdownTimeout }, 'shutdown deadline: unfinished requests answered 503');
      // The replies are on their way; a last bound in case a socket never lets go.
      setTimeout(() => {
        app.log.error('connections did not close after the deadline; exiting');
        process.exit(0);
      }, 2000).unref();
    }, config.shutdownTimeout);
    deadline.unref();
    // 2. After the grace period (still listening, so probes see /readyz 503), stop
    //    accepting, answer long-polls, wait for what is in flight.
    const grace = Math.min(config.shutdownGrace, Math.max(0, config.shutdownTimeout - 1));
    setTimeout(() => {
      app.close().then(
        () => {
          clearTimeout(deadline);
          app.log.info({ ms: Date.now() - started }, 'closed');
          process.exit(0);
        },
        (err: unknown) => {
          app.log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    }, grace);
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
  return app;
}

const isMain = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (isMain) {
  let config: Config;
  try {
    config = loadConfig(process.env, process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`kcovd: ${(err as Error).message}\n`);
    process.exit(2);
  }
  start(config).catch((err: unknown) => {
    process.stderr.write(`kcovd: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
