/**
 * The fleet on Redis (or Valkey; single server or Redis Cluster), with ioredis.
 *
 * Keys, one hash tag per corpus so that every key of a corpus lives in one
 * hash slot (the Lua script below touches only those, as Cluster requires):
 *   kcovd:{<corpus>}:pc   HASH  field = PC as 8 little-endian bytes, value = id of the instance that added it first
 *   kcovd:{<corpus>}:sig  SET   member = signal as 8 little-endian bytes
 *
 * Writes: every kernel's union keeps a journal of the keys that entered it
 * (charged to the memory budget). Every KCOV_FLEET_FLUSH_MS the journals are
 * folded up to date and pushed, in batches of BATCH keys per script call,
 * all calls of one flush pipelined. Ingestion never waits on any of it.
 *
 * What is new fleet-wide: ?new=true first answers locally (synchronously, with
 * its reset), then claims the locally new PCs with one script call: HSETNX
 * makes the first instance to push a PC its owner, so a PC is new for an
 * instance when it set it now or set it earlier from an unreported fold (the
 * owner is itself). Past KCOV_FLEET_TIMEOUT_MS, or when not connected, the
 * local answer stands.
 *
 * Outages: with Redis unreachable nothing is dropped: journals keep growing
 * (in budget) and a failed push puts its keys back. On every (re)connect each
 * union is pushed whole, so a Redis that restarted empty (no persistence)
 * gets everything back from the instances.
 */
import { Cluster, Redis } from 'ioredis';
import type { Engine } from '../engine/engine.js';
import type { Kernel } from '../engine/kernel.js';
import type { CoverUnion } from '../engine/cover/union.js';
import type { Fleet, FleetStatus, FleetUnion } from './fleet.js';

/** Keys per script call: bounds the time Redis spends in one script. */
const BATCH = 4096;

const PUSH = `
local pcs, me, sigs, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local flags = {}
for i = 1, #pcs, 8 do
  local pc = string.sub(pcs, i, i + 7)
  local f = '0'
  if redis.call('HSETNX', KEYS[1], pc, me) == 1 then f = '1'
  elseif want == '1' and redis.call('HGET', KEYS[1], pc) == me then f = '1' end
  if want == '1' then flags[#flags + 1] = f end
end
for i = 1, #sigs, 8 do redis.call('SADD', KEYS[2], string.sub(sigs, i, i + 7)) end
return table.concat(flags)
`;

export interface RedisFleetOptions {
  /** redis://host:port, or several comma-separated for a cluster's seed nodes. */
  readonly url: string;
  /** Use the Cluster client even with one seed URL. */
  readonly cluster?: boolean;
  /** Owner id written with the PCs this instance adds first. */
  readonly instance: string;
  /** Longest wait of ?new=true for the fleet's answer (ms). */
  readonly timeoutMs: number;
  /** Interval of journal pushes (ms). */
  readonly flushMs: number;
}

type PushFn = (pcKey: string, sigKey: string, pcs: Buffer, me: string, sigs: Buffer, want: string) => Promise<string>;

export function keysOf(corpus: string): { pc: string; sig: string } {
  return { pc: `kcovd:{${corpus}}:pc`, sig: `kcovd:{${corpus}}:sig` };
}

/** Little-endian words as bytes, sharing memory. */
function bytesOf(words: Uint32Array): Buffer {
  return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
}

export class RedisFleet implements Fleet {
  private readonly client: Redis | Cluster;
  private readonly engine: Engine;
  private readonly opts: RedisFleetOptions;
  private readonly timer: NodeJS.Timeout;
  private connected = false;
  private error: string | null = 'connecting';
  private roundTrips = 0;
  private failures = 0;
  private flushing: Promise<void> | null = null;
  /** Unions to push whole at the next flush (after a (re)connect, a journal overflow, a new kernel). */
  private readonly whole = new Set<CoverUnion>();
  /** When each union's journal got its oldest unpushed key. */
  private readonly pendingSince = new Map<CoverUnion, number>();
  /** Keys of deleted kernels not pushed yet (their union's memory is gone; kept here until pushed). */
  private readonly orphans: { corpus: string; pcs: Uint32Array; signals: Uint32Array; since: number }[] = [];
  private closed = false;

  constructor(engine: Engine, opts: RedisFleetOptions) {
    this.engine = engine;
    this.opts = opts;
    const urls = opts.url.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const retryStrategy = (times: number) => Math.min(50 * times, 1000);
    if (urls.length > 1 || opts.cluster === true) {
      const nodes = urls.map((u) => {
        const p = new URL(u);
        return { host: p.hostname, port: Number(p.port || 6379) };
      });
      this.client = new Cluster(nodes, { enableOfflineQueue: false, clusterRetryStrategy: retryStrategy, redisOptions: { commandTimeout: 5000 } });
    } else {
      this.client = new Redis(urls[0]!, { enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy, commandTimeout: 5000 });
    }
    this.client.defineCommand('kcovdPush', { numberOfKeys: 2, lua: PUSH });
    this.client.on('ready', () => {
      this.connected = true;
      this.error = null;
      // Whatever Redis lost while away (or never had) goes back whole.
      for (const k of this.engine.kernels.values()) this.whole.add(k.cover);
      void this.flush();
    });
    this.client.on('error', (e: Error) => {
      this.error = e.message;
    });
    this.client.on('close', () => {
      this.connected = false;
      this.error ??= 'connection closed';
    });
    this.timer = setInterval(() => void this.flush(), opts.flushMs);
    this.timer.unref();
  }

  private get push(): PushFn {
    return (this.client as unknown as { kcovdPush: PushFn }).kcovdPush.bind(this.client);
  }

  /** Journals on for every kernel (new kernels are pushed whole once). */
  private adopt(): void {
    for (const k of this.engine.kernels.values()) {
      const u = k.cover;
      if (u.journal !== null) continue;
      u.startJournal();
      this.whole.add(u);
      u.onRelease = (gone) => {
        const j = gone.takeJournal();
        if (j !== null) this.orphans.push({ corpus: gone.corpus, pcs: j.pcs, signals: j.signals, since: this.pendingSince.get(gone) ?? Date.now() });
        this.whole.delete(gone);
        this.pendingSince.delete(gone);
      };
    }
  }

  /** One round of pushes; concurrent callers share it. */
  flush(): Promise<void> {
    if (this.flushing !== null) return this.flushing;
    this.flushing = this.flushOnce().finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    if (this.closed) return;
    this.adopt();
    const now = Date.now();
    type Work = { kind: 'whole' | 'journal' | 'orphan'; kernel: Kernel | null; corpus: string; pcs: Uint32Array; signals: Uint32Array; since: number };
    const work: Work[] = [];
    for (const k of this.engine.kernels.values()) {
      const u = k.cover;
      // Records still in the areas reach the union (and its journal) without waiting for a read.
      u.settle();
      if (!this.connected) {
        if (u.journal !== null && (u.journal.pcs.size > 0 || u.journal.signals.size > 0) && !this.pendingSince.has(u)) this.pendingSince.set(u, now);
        continue;
      }
      const j = u.takeJournal();
      const since = this.pendingSince.get(u) ?? now;
      this.pendingSince.delete(u);
      if (this.whole.delete(u)) work.push({ kind: 'whole', kernel: k, corpus: u.corpus, pcs: u.pcs.words(), signals: u.signals.words(), since });
      else if (j !== null) work.push({ kind: 'journal', kernel: k, corpus: u.corpus, pcs: j.pcs, signals: j.signals, since });
    }
    if (!this.connected) return;
    for (const o of this.orphans.splice(0)) work.push({ kind: 'orphan', kernel: null, ...o });
    if (work.length === 0) return;
    await Promise.all(work.map(async (w) => {
      try {
        await this.pushAll(w.corpus, w.pcs, w.signals, false);
      } catch {
        // Back where it came from: nothing is lost, the next flush tries again.
        const alive = w.kernel !== null && this.engine.kernels.get(w.kernel.name) === w.kernel;
        if (alive && w.kind === 'whole') this.whole.add(w.kernel!.cover);
        else if (alive) w.kernel!.cover.restoreJournal(w.pcs, w.signals);
        else this.orphans.push({ corpus: w.corpus, pcs: w.pcs, signals: w.signals, since: w.since });
        if (alive && !this.pendingSince.has(w.kernel!.cover)) this.pendingSince.set(w.kernel!.cover, w.since);
      }
    }));
  }

  /** Push keys in batches, pipelined; the flags of PCs when `want`. */
  private async pushAll(corpus: string, pcs: Uint32Array, signals: Uint32Array, want: boolean): Promise<string> {
    const keys = keysOf(corpus);
    const calls: Promise<string>[] = [];
    const n = Math.max(pcs.length, signals.length) / 2;
    const push = this.push;
    for (let at = 0; at < n || at === 0; at += BATCH) {
      const p = pcs.subarray(Math.min(at * 2, pcs.length), Math.min((at + BATCH) * 2, pcs.length));
      const s = signals.subarray(Math.min(at * 2, signals.length), Math.min((at + BATCH) * 2, signals.length));
      calls.push(push(keys.pc, keys.sig, bytesOf(p), this.opts.instance, bytesOf(s), want ? '1' : '0'));
      if (n === 0) break;
    }
    try {
      const out = await Promise.all(calls);
      this.roundTrips++;
      return out.join('');
    } catch (e) {
      this.failures++;
      this.error = (e as Error).message;
      throw e;
    }
  }

  async claim(k: Kernel, records: Uint32Array, stride: number): Promise<Uint8Array | null> {
    const n = records.length / (stride * 2);
    if (n === 0) return new Uint8Array(0);
    if (!this.connected) return null;
    const pcs = new Uint32Array(n * 2);
    for (let i = 0, w = (stride - 1) * 2; i < n; i++, w += stride * 2) {
      pcs[i * 2] = records[w]!;
      pcs[i * 2 + 1] = records[w + 1]!;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), this.opts.timeoutMs);
    });
    try {
      const flags = await Promise.race([this.pushAll(k.cover.corpus, pcs, new Uint32Array(0), true), late]);
      if (flags === null || flags.length !== n) return null;
      const mask = new Uint8Array(n);
      for (let i = 0; i < n; i++) mask[i] = flags.charCodeAt(i) === 0x31 ? 1 : 0;
      return mask;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async read(k: Kernel): Promise<FleetUnion | null> {
    if (!this.connected) return null;
    try {
      await this.flush();
      if (this.pendingSince.has(k.cover) || this.whole.has(k.cover)) return null; // the push failed: Redis lacks ours
      const keys = keysOf(k.cover.corpus);
      const [fields, signal] = await Promise.all([this.client.hkeysBuffer(keys.pc), this.client.scard(keys.sig)]);
      this.roundTrips++;
      const all = new BigUint64Array(fields.length);
      const u = new Uint32Array(all.buffer);
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i]!;
        if (f.length !== 8) continue;
        u[i * 2] = f.readUInt32LE(0);
        u[i * 2 + 1] = f.readUInt32LE(4);
      }
      all.sort();
      return { pcs: u, signal };
    } catch (e) {
      this.failures++;
      this.error = (e as Error).message;
      return null;
    }
  }

  async reset(k: Kernel): Promise<boolean> {
    if (!this.connected) return false;
    const keys = keysOf(k.cover.corpus);
    try {
      await this.client.del(keys.pc, keys.sig);
      this.roundTrips++;
      return true;
    } catch (e) {
      this.failures++;
      this.error = (e as Error).message;
      return false;
    }
  }

  status(): FleetStatus {
    let pending = 0;
    let oldest = Infinity;
    for (const k of this.engine.kernels.values()) {
      const j = k.cover.journal;
      if (j !== null) pending += j.pcs.size + j.signals.size;
      if (this.whole.has(k.cover)) pending += k.cover.pcs.size + k.cover.signals.size;
    }
    for (const o of this.orphans) {
      pending += (o.pcs.length + o.signals.length) / 2;
      oldest = Math.min(oldest, o.since);
    }
    for (const t of this.pendingSince.values()) oldest = Math.min(oldest, t);
    return {
      kind: 'redis',
      connected: this.connected,
      error: this.connected ? null : this.error,
      pending,
      lagSeconds: oldest === Infinity || pending === 0 ? 0 : (Date.now() - oldest) / 1000,
      roundTrips: this.roundTrips,
      failures: this.failures,
    };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.connected) {
      try {
        await this.flush();
      } catch {
        // best effort at shutdown
      }
    }
    this.closed = true;
    this.client.disconnect();
  }
}
