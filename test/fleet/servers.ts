/**
 * Real Redis-protocol servers for the fleet's tests and bench/fleet.ts: a
 * free ephemeral port, one server (redis-server or valkey-server) in its own
 * temp dir, and a Redis Cluster of three masters. Every process started here
 * is stopped by stop(); nothing binds a fixed port.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A port the kernel handed out just now (closed again: a small race, never a fixed port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** `bin --version` runs. */
export function installed(bin: string): boolean {
  return spawnSync(bin, ['--version']).status === 0;
}

/** One server process; start() again after stop() restarts it on the same port and dir (empty: no persistence). */
export class RedisServer {
  proc: ChildProcess | null = null;
  private log = '';

  constructor(readonly port: number, readonly dir: string, readonly bin = 'redis-server', readonly extra: readonly string[] = []) {}

  static async create(bin = 'redis-server', extra: readonly string[] = []): Promise<RedisServer> {
    return new RedisServer(await freePort(), mkdtempSync(join(tmpdir(), 'kcovd-redis-')), bin, extra);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extra];
    const p = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = p;
    this.log = '';
    await new Promise<void>((resolve, reject) => {
      const onData = (b: Buffer) => {
        this.log += b.toString();
        if (this.log.includes('Ready to accept connections')) resolve();
      };
      p.stdout!.on('data', onData);
      p.stderr!.on('data', onData);
      p.once('exit', (code) => reject(new Error(`${this.bin} exited with ${code}: ${this.log}`)));
    });
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (p === null || p.exitCode !== null || p.signalCode !== null) return;
    this.proc = null;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  }

  /** Stop, and remove its dir. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** `redis-cli -p port args…`: its stdout, trimmed. */
  cli(...args: string[]): string {
    const r = spawnSync(this.bin.replace(/-server$/, '-cli'), ['-h', '127.0.0.1', '-p', String(this.port), ...args], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`cli ${args.join(' ')}: ${r.status} ${r.stderr}`);
    return r.stdout.trim();
  }
}

/**
 * A Redis Cluster of three masters, no replicas: each node on a free port with
 * its cluster bus on another (`--cluster-port`), its own dir and nodes.conf.
 * A node restarted keeps its slots (nodes.conf) and comes back empty.
 */
export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async create(bin = 'redis-server', size = 3): Promise<RedisCluster> {
    const nodes: RedisServer[] = [];
    for (let i = 0; i < size; i++) {
      const bus = await freePort();
      nodes.push(await RedisServer.create(bin, [
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-port', String(bus),
        // Failure detection in a second, so a restarted node rejoins quickly.
        '--cluster-node-timeout', '1000',
      ]));
    }
    const c = new RedisCluster(nodes);
    try {
      for (const n of nodes) await n.start();
      const cli = bin.replace(/-server$/, '-cli');
      const r = spawnSync(cli, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${cli} --cluster create: ${r.status} ${r.stdout} ${r.stderr}`);
      await c.healthy();
    } catch (e) {
      await c.destroy();
      throw e;
    }
    return c;
  }

  /** Seed URLs, comma-separated (KCOV_FLEET_URL). */
  get url(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  /** Every node says cluster_state:ok and knows every node. */
  async healthy(ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    for (;;) {
      const ok = this.nodes.every((n) => {
        try {
          const info = n.cli('cluster', 'info');
          return /cluster_state:ok/.test(info) && new RegExp(`cluster_known_nodes:${this.nodes.length}\\b`).test(info);
        } catch {
          return false;
        }
      });
      if (ok) return;
      if (Date.now() > end) throw new Error('the cluster did not become healthy');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The node that serves `key`'s hash slot. */
  nodeOf(key: string): RedisServer {
    const slot = Number(this.nodes[0]!.cli('cluster', 'keyslot', key));
    for (const n of this.nodes) {
      const own = n.cli('cluster', 'myid');
      const line = n.cli('cluster', 'nodes').split('\n').find((l) => l.startsWith(own));
      if (line === undefined) continue;
      for (const r of line.split(' ').slice(8)) {
        const [a, b] = r.split('-').map(Number);
        if (slot >= a! && slot <= (b ?? a)!) return n;
      }
    }
    throw new Error(`no node serves slot ${slot}`);
  }

  async destroy(): Promise<void> {
    for (const n of this.nodes) await n.destroy();
  }
}
