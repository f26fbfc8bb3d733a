/** What the fleet's tests against real servers share (two instances, polling for what is eventually true). */
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { Client, json } from '../helpers.js';
import { installed } from './servers.js';

/** The tools are there; under CI=true a missing one fails the file (never skips), as .ci/run installs them. */
export function need(...bins: string[]): boolean {
  const missing = bins.filter((b) => !installed(b));
  if (missing.length > 0 && process.env.CI === 'true') {
    t.fail(`${missing.join(', ')} not installed (.ci/run installs it); CI must run these tests`);
  }
  return missing.length === 0;
}

export async function until<T>(what: string, fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function fleetStatus(app: FastifyInstance): Promise<{ connected: boolean; pending: number; error: string | null }> {
  return json(await app.inject({ method: 'GET', url: '/readyz' })).fleet;
}

/** A descriptor tracing PCs for thread `tid`. */
export async function tracing(app: FastifyInstance, tid: number, kernel = 'default') {
  const c = new Client(app, kernel);
  const fd = await c.open(tid);
  await c.ok(fd, 'KCOV_INIT_TRACE', tid, 256);
  await c.ok(fd, 'KCOV_ENABLE', tid, 'pc');
  return { c, fd };
}

export async function unionOf(c: Client): Promise<{ pcs: string[]; source: string; signal: number; count: number }> {
  return json(await c.app.inject({ method: 'GET', url: `${c.base}/cover` }));
}

/** ?new=true&reset=true on the descriptor: the PCs new to the fleet. */
export async function takeNew(x: { c: Client; fd: number }): Promise<string[]> {
  return json(await x.c.coverage(x.fd, 'application/json', '?new=true&reset=true')).pcs;
}
