/** A real server on an ephemeral port, for tests that speak HTTP over sockets (client, CLI, C runtime). */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { makeApp } from './helpers.js';

export interface LiveServer {
  app: FastifyInstance;
  url: string;
  port: number;
}

export async function listenApp(t: { teardown(fn: () => unknown): void }, env: Record<string, string> = {}): Promise<LiveServer> {
  const app = await makeApp(t, env);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  return { app, url: `http://127.0.0.1:${port}`, port };
}
