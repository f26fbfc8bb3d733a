/** Shared set-up for route tests: an app on fastify.inject, and short-hands for the contract's routes. */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';
import { KcovError } from '../src/engine/errno.js';
import type { Dialect } from '../src/engine/dialect.js';
import type { Engine } from '../src/engine/engine.js';
import type { Kernel } from '../src/engine/kernel.js';
import type { DialectTypes } from '../src/engine/model.js';

export interface TestContext {
  teardown(fn: () => unknown): void;
}

export async function makeApp(t: TestContext, env: Record<string, string> = {}): Promise<FastifyInstance> {
  // No dashboard history unless a test asks (test/ui/): route tests pin budget.used to what their kernels hold.
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2', KCOV_UI_SAMPLE_MS: '0', ...env }) });
  await app.ready();
  t.teardown(() => app.close());
  return app;
}

export function json(res: LightMyRequestResponse): any {
  return JSON.parse(res.body);
}

export class Client {
  constructor(readonly app: FastifyInstance, readonly kernel = 'default') {}

  get base(): string {
    return `/v1/kernels/${this.kernel}`;
  }

  async open(tid?: number): Promise<number> {
    const res = await this.app.inject({ method: 'POST', url: `${this.base}/descriptors`, payload: tid === undefined ? {} : { tid } });
    if (res.statusCode !== 201) throw new Error(`open: ${res.statusCode} ${res.body}`);
    return json(res).fd;
  }

  ioctl(fd: number, cmd: string, tid: number, arg?: unknown): Promise<LightMyRequestResponse> {
    const payload: Record<string, unknown> = { tid };
    if (arg !== undefined) payload.arg = arg;
    return this.app.inject({ method: 'POST', url: `${this.base}/descriptors/${fd}/ioctl/${cmd}`, payload });
  }

  /** An ioctl that must succeed. */
  async ok(fd: number, cmd: string, tid: number, arg?: unknown): Promise<any> {
    const res = await this.ioctl(fd, cmd, tid, arg);
    if (res.statusCode !== 200) throw new Error(`${cmd}: ${res.statusCode} ${res.body}`);
    return json(res);
  }

  events(tid: number, body: Record<string, unknown>): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'POST', url: `${this.base}/threads/${tid}/events`, payload: body });
  }

  binary(tid: number, body: Buffer, kind: 'pc' | 'cmp' = 'pc'): Promise<LightMyRequestResponse> {
    return this.app.inject({
      method: 'POST',
      url: `${this.base}/threads/${tid}/events?kind=${kind}`,
      headers: { 'content-type': 'application/octet-stream' },
      payload: body,
    });
  }

  coverage(fd: number, accept = 'application/json', query = ''): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'GET', url: `${this.base}/descriptors/${fd}/coverage${query}`, headers: { accept } });
  }

  async cover(fd: number): Promise<any> {
    const res = await this.coverage(fd);
    if (res.statusCode !== 200) throw new Error(`coverage: ${res.statusCode} ${res.body}`);
    return json(res);
  }

  descriptor(fd: number): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'GET', url: `${this.base}/descriptors/${fd}` });
  }

  close(fd: number): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'DELETE', url: `${this.base}/descriptors/${fd}` });
  }

  exit(tid: number): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'DELETE', url: `${this.base}/threads/${tid}` });
  }

  thread(tid: number, body: Record<string, unknown> = {}): Promise<LightMyRequestResponse> {
    return this.app.inject({ method: 'PUT', url: `${this.base}/threads/${tid}`, payload: body });
  }
}

/** Packed little-endian PCs from small numbers. */
export function pcs(...values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 8);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt(v), i * 8));
  return b;
}

/** Packed CMP records [type, arg1, arg2, pc]. */
export function cmps(...records: [number, number, number, number][]): Buffer {
  const b = Buffer.alloc(records.length * 32);
  records.forEach((r, i) => r.forEach((v, j) => b.writeBigUInt64LE(BigInt(v), i * 32 + j * 8)));
  return b;
}

/** Assert a problem+json reply with the given status and errno. */
export interface Assert {
  equal(...args: any[]): unknown;
  match(...args: any[]): unknown;
}

export function expectProblem(t: Assert, res: LightMyRequestResponse, status: number, errno: string): void {
  t.equal(res.statusCode, status, `status ${status} (${res.body})`);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, 'problem+json');
  const p = JSON.parse(res.body);
  t.equal(p.errno, errno, `errno ${errno}`);
  t.equal(p.status, status, 'status in body');
  t.equal(typeof p.code, 'number', 'numeric code');
}

/** The errno an engine call fails with, or null when it succeeds. */
export function errnoOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    // Only the engine's own errors: anything else is a bug the test should show.
    if (e instanceof KcovError) return e.errno;
    throw e;
  }
}

/** A kernel seen as its dialect's own types, so a test can read dialect fields (the engine itself never needs this). */
export function typedKernel<X extends DialectTypes>(k: Kernel, dialect: Dialect<X>): Kernel<X> {
  if (k.dialect !== dialect) throw new Error(`kernel "${k.name}" is ${k.dialect.name}, not ${dialect.name}`);
  return k as unknown as Kernel<X>;
}

/**
 * Run the invariant checker over every engine `track` was given, after each
 * test of the file: remote sections, pools and registries must leave the model
 * consistent (and every byte charged reachable).
 */
export function invariantsAfterEach(tap: { afterEach(fn: () => unknown): unknown }): (e: Engine) => Engine {
  const engines: Engine[] = [];
  tap.afterEach(() => {
    // The test has ended; a violation fails it by throwing.
    for (const e of engines.splice(0)) {
      const broken = e.checkInvariants();
      if (broken.length > 0) throw new Error(`invariants broken after the test:\n${broken.join('\n')}`);
    }
  });
  return (e) => {
    engines.push(e);
    return e;
  };
}
