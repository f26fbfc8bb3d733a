/** Entry point: configuration, listen, graceful shutdown. */
import { loadConfig, type Config } from './config.js';
import { buildApp } from './http/app.js';

export async function start(config: Config) {
  const app = await buildApp({ config, logger: { level: config.logLevel } });
  await app.listen({ port: config.port, host: config.host });
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
