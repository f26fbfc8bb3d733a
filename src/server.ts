/** Entry point: configuration, listen, graceful shutdown. */
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import { loadConfig, type Config } from './config.js';
import { buildApp } from './http/app.js';
import { clientErrorHandler } from './http/plugins/errors.js';
import { serverOptions } from './http/plugins/limits.js';

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

export async function start(config: Config) {
  const app = await buildApp({ config, logger: { level: config.logLevel } });
  const unix = config.socket === undefined ? undefined : unixListener(app, config, config.socket);
  await app.listen({ port: config.port, host: config.host });
  if (unix !== undefined) await unix.listen();
  let closing = false;
  const shutdown = (signal: string) => {
    if (closing) return;
    closing = true;
    // /readyz answers 503 from here on; new requests get 503 problems; in-flight ones finish.
    app.appState.draining = true;
    app.log.info({ signal }, 'draining');
    const force = setTimeout(() => {
      app.log.error({ timeout: config.shutdownTimeout }, 'shutdown took too long; exiting');
      process.exit(1);
    }, config.shutdownTimeout);
    force.unref();
    app.close().then(
      () => {
        app.log.info('closed');
        process.exit(0);
      },
      (err: unknown) => {
        app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
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
