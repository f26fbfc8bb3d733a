/** A real server on an ephemeral port, for tests that speak HTTP over sockets (client, CLI, C runtime). */
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
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

/** The built CLI's entry. */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  raw: Buffer;
}

/** The built `kcovd` command as a child process; `url` becomes its KCOVD_URL, `input` its stdin. */
export function kcovd(args: string[], opts: { url?: string; input?: string | Buffer; env?: Record<string, string> } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, KCOVD_URL: opts.url, KCOV_TOKEN: '', ...opts.env };
    // Through sh, without the test runner's NODE_OPTIONS: its loaders make each node start several times slower.
    const child = spawn('/bin/sh', ['-c', 'unset NODE_OPTIONS; exec "$0" "$@"', process.execPath, CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const raw = Buffer.concat(out);
      resolve({ code, stdout: raw.toString(), stderr: Buffer.concat(err).toString(), raw });
    });
    child.stdin.end(opts.input ?? '');
  });
}
