/**
 * A kcovd for bench/fleet.ts: `node dist/bench/fleet-server.js [redis://…]`
 * listens on an ephemeral port (fleet on when a URL is given) and reports it
 * over IPC; answers 'cpu' with its CPU time in µs.
 */
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';

const url = process.argv[2];
const app = await buildApp({
  config: loadConfig({ KCOV_NCPUS: '2', KCOV_MEMORY_LIMIT: '2G', LOG_LEVEL: 'silent', ...(url === undefined ? {} : { KCOV_FLEET_URL: url }) }),
});
await app.listen({ port: 0, host: '127.0.0.1' });
process.send?.({ port: (app.server.address() as AddressInfo).port });
process.on('message', (m: unknown) => {
  if (m === 'cpu') {
    const u = process.cpuUsage();
    process.send?.({ cpu: u.user + u.system });
  }
});
process.on('disconnect', () => {
  void app.close().finally(() => process.exit(0));
});
