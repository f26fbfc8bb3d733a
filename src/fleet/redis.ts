/**
 * The fleet on Redis (or Valkey; single server or Redis Cluster), with ioredis.
 *
 * Keys, one hash tag per corpus so that every key of a corpus lives in one
 * hash slot (the Lua scripts below touch only those, as Cluster requires):
 *   kcovd:{<corpus>}:pc     HASH    field = PC as 8 little-endian bytes, value = id of the instance that added it first
 *   kcovd:{<corpus>}:sig    SET     member = signal as 8 little-endian bytes
 *   kcovd:{<corpus>}:epoch  STRING  "<generation>:<incarnation>"
 *
 * The epoch says which union the other two keys hold. DELETE /cover raises
 * the generation (and empties the corpus): every instance that sees a higher
 * generation than the one it knows empties its own union of that corpus (a
 * fleet-wide reset). A store that lost the corpus (a restart without
 * persistence, a cluster node that came back empty, FLUSHALL) has no epoch,
 * or one some instance re-created with a new incarnation: every instance that
 * sees a different incarnation of its own generation pushes its whole union
 * again. Every push checks the epoch first and writes nothing when it is not
 * the one the instance knows, so an instance that pushes learns both within
 * one flush round; one with nothing to push checks it once a second
 * (IDLE_CHECK_MS), and GET /cover checks it before reading.
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
 * owner is itself). Past KCOV_FLEET_TIMEOUT_MS, when not connected, or when
 * the epoch moved, the local answer stands.
 *
 * Outages: with Redis unreachable nothing is dropped: journals keep growing
 * (in budget) and a failed push puts its keys back. On every (re)connect each
 * union is pushed whole, and the epoch check catches what a reconnect does
 * not show (one cluster node restarted).
 */
import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import type { Engine } from '../engine/engine.js';
import type { Kernel } from '../engine/kernel.js';
import type { CoverUnion } from '../engine/cover/union.js';
import type { CorpusStatus, Fleet, FleetStatus, FleetUnion } from './fleet.js';

/** Keys per script call: bounds the time Redis spends in one script. */
const BATCH = 4096;

/** A union with nothing to push has its epoch checked at most this often (ms), unless a read asks. */
const IDLE_CHECK_MS = 1000;

/** Generation of an epoch string ("<gen>:<incarnation>"; absent: 0). */
const GEN_LUA = `
local function gen(s)
  if not s then return 0 end
  local g = string.match(s, '^(%d+):')
  if g then return tonumber(g) end
  return 0
end
`;

/**
 * KEYS pc sig epoch; ARGV pcs me sigs want expect. Nothing is written unless
 * the epoch is `expect`: {0}. Else {1, flags ('1' per PC new for me, when
 * want), HLEN, SCARD}.
 */
const PUSH = `
local pcs, me, sigs, want = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('GET', KEYS[3]) ~= ARGV[5] then return {0} end
local flags = {}
for i = 1, #pcs, 8 do
  local pc = string.sub(pcs, i, i + 7)
  local f = '0'
  if redis.call('HSETNX', KEYS[1], pc, me) == 1 then f = '1'
  elseif want == '1' and redis.call('HGET', KEYS[1], pc) == me then f = '1' end
  if want == '1' then flags[#flags + 1] = f end
end
for i = 1, #sigs, 8 do redis.call('SADD', KEYS[2], string.sub(sigs, i, i + 7)) end
return {1, table.concat(flags), redis.call('HLEN', KEYS[1]), redis.call('SCARD', KEYS[2])}
`;

/**
 * KEYS pc sig epoch; ARGV mine fresh: the corpus's epoch. A missing one is
 * created with my generation; one of a lower generation than mine (a store
 * that lost the corpus and got it back from an instance that never saw the
 * last reset) is replaced, the corpus emptied.
 */
const SYNC = GEN_LUA + `
local cur = redis.call('GET', KEYS[3])
if cur and gen(cur) >= gen(ARGV[1]) then return cur end
if cur then redis.call('DEL', KEYS[1], KEYS[2]) end
local e = gen(ARGV[1]) .. ':' .. ARGV[2]
redis.call('SET', KEYS[3], e)
return e
`;

/** KEYS pc sig epoch; ARGV mine fresh: empty the corpus under a generation above any seen. */
const RESET = GEN_LUA + `
local g = math.max(gen(redis.call('GET', KEYS[3])), gen(ARGV[1])) + 1
redis.call('DEL', KEYS[1], KEYS[2])
local e = g .. ':' .. ARGV[2]
redis.call('SET', KEYS[3], e)
return e
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

type Keys = { pc: string; sig: string; epoch: string };
type Script = (pc: string, sig: string, epoch: string, ...argv: (string | Buffer)[]) => Promise<unknown>;

export function keysOf(corpus: string): Keys {
  return { pc: `kcovd:{${corpus}}:pc`, sig: `kcovd:{${corpus}}:sig`, epoch: `kcovd:{${corpus}}:epoch` };
}

/** Generation of an epoch string. */
export function generationOf(epoch: string): number {
  const m = /^(\d+):/.exec(epoch);
  return m === null ? 0 : Number(m[1]);
}

/** Little-endian words as bytes, sharing memory. */
function bytesOf(words: Uint32Array): Buffer {
  return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
}

const fresh = (): string => randomBytes(6).toString('hex');

/** A push's answer: null when the corpus's epoch was not the one expected (nothing written). */
type Pushed = { flags: string; pcs: number; signal: number } | null;

interface Orphan { corpus: string; pcs: Uint32Array; signals: Uint32Array; since: number; epoch: string }

export class RedisFleet implements Fleet {
  private readonly client: Redis | Cluster;
  private readonly engine: Engine;
  private readonly opts: RedisFleetOptions;
  private readonly timer: NodeJS.Timeout;
  private connected = false;
  /** Corpora whose last round trip failed (a cluster node down while the client stays up). */
  private readonly failing = new Set<string>();
  /** Keys taken out of the journals by a push not answered yet (still pending: counted, and their age is lag). */
  private readonly inflight = new Set<{ readonly n: number; readonly since: number }>();
  private error: string | null = 'connecting';
  private roundTrips = 0;
  private roundTripSeconds = 0;
  private failures = 0;
  private remoteResets = 0;
  private flushing: Promise<void> | null = null;
  /** Unions to push whole at the next flush (after a (re)connect, a journal overflow, a new kernel, a store that lost the corpus). */
  private readonly whole = new Set<CoverUnion>();
  /** When each union's journal got its oldest unpushed key. */
  private readonly pendingSince = new Map<CoverUnion, number>();
  /** The corpus epoch each union was last in step with ('' never). */
  private readonly epochs = new Map<CoverUnion, string>();
  /** Unions whose epoch was confirmed since the last (re)connect or mismatch. */
  private readonly synced = new Set<CoverUnion>();
  /** When each union's epoch was last confirmed by a push. */
  private readonly checkedAt = new Map<CoverUnion, number>();
  /** The next round checks every union, idle or not (a read asked). */
  private forceNext = false;
  /** What Redis last said of each corpus. */
  private readonly corpora = new Map<string, { pcs: number; signal: number }>();
  /** Keys of deleted kernels not pushed yet (their union's memory is gone; kept here until pushed). */
  private readonly orphans: Orphan[] = [];
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
    this.client.defineCommand('kcovdPush', { numberOfKeys: 3, lua: PUSH });
    this.client.defineCommand('kcovdSync', { numberOfKeys: 3, lua: SYNC });
    this.client.defineCommand('kcovdReset', { numberOfKeys: 3, lua: RESET });
    this.client.on('ready', () => {
      this.connected = true;
      this.failing.clear();
      this.error = null;
      // Whatever Redis lost while away (or never had) goes back whole, once the epochs are checked.
      this.synced.clear();
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

  private script(name: 'kcovdPush' | 'kcovdSync' | 'kcovdReset'): Script {
    const c = this.client as unknown as Record<string, Script>;
    return c[name]!.bind(this.client);
  }

  /** One round trip (several pipelined calls), counted and timed. */
  private async trip<T>(corpus: string, calls: Promise<T>[]): Promise<T[]> {
    const t0 = performance.now();
    try {
      const out = await Promise.all(calls);
      this.roundTrips++;
      this.roundTripSeconds += (performance.now() - t0) / 1000;
      this.failing.delete(corpus);
      return out;
    } catch (e) {
      this.failures++;
      this.failing.add(corpus);
      this.error = (e as Error).message;
      throw e;
    }
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
        if (j !== null) this.orphans.push({ corpus: gone.corpus, pcs: j.pcs, signals: j.signals, since: this.pendingSince.get(gone) ?? Date.now(), epoch: this.epochs.get(gone) ?? '' });
        this.whole.delete(gone);
        this.pendingSince.delete(gone);
        this.epochs.delete(gone);
        this.synced.delete(gone);
        this.checkedAt.delete(gone);
      };
    }
  }

  /** One round of pushes; concurrent callers share it. */
  flush(): Promise<void> {
    if (this.flushing !== null) return this.flushing;
    this.flushing = this.flushOnce(0).finally(() => {
      this.flushing = null;
    });
    return this.flushing;
  }

  /** A round that starts after this call (one in progress may have taken its journals before the caller's records came). */
  private async flushFresh(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    this.forceNext = true;
    await this.flush();
  }

  private alive(k: Kernel): boolean {
    return this.engine.kernels.get(k.name) === k;
  }

  /**
   * Bring `u` in step with its corpus's epoch: a higher generation is a
   * fleet-wide reset (the local union is emptied); another incarnation of
   * ours, or none, is a store that lost the corpus (ours goes back whole).
   */
  private async sync(k: Kernel): Promise<void> {
    const u = k.cover;
    const mine = this.epochs.get(u) ?? '';
    const resets = u.resets;
    const keys = keysOf(u.corpus);
    const [cur] = await this.trip(u.corpus, [this.script('kcovdSync')(keys.pc, keys.sig, keys.epoch, mine, fresh()) as Promise<string>]);
    if (!this.alive(k) || u.resets !== resets) return; // deleted, or reset here meanwhile (that reset sets the epoch)
    if (cur !== mine) {
      if (mine !== '' && generationOf(cur!) > generationOf(mine)) {
        u.reset();
        this.remoteResets++;
        this.pendingSince.delete(u);
      }
      this.whole.add(u);
    }
    this.epochs.set(u, cur!);
    this.synced.add(u);
  }

  private async flushOnce(depth: number): Promise<void> {
    if (this.closed) return;
    this.adopt();
    const now = Date.now();
    const force = this.forceNext || depth > 0;
    this.forceNext = false;
    for (const k of this.engine.kernels.values()) {
      const u = k.cover;
      // Records still in the areas reach the union (and its journal) without waiting for a read.
      u.settle();
      if (!this.connected && u.journal !== null && (u.journal.pcs.size > 0 || u.journal.signals.size > 0) && !this.pendingSince.has(u)) this.pendingSince.set(u, now);
    }
    if (!this.connected) return;
    // Epochs first: a push is checked against the epoch it was sent with.
    const unsynced = [...this.engine.kernels.values()].filter((k) => !this.synced.has(k.cover));
    await Promise.all(unsynced.map((k) => this.sync(k).catch(() => undefined)));
    type Work = { kernel: Kernel | null; whole: boolean; resets: number; orphan: Orphan | null; corpus: string; epoch: string; pcs: Uint32Array; signals: Uint32Array; since: number };
    const work: Work[] = [];
    for (const k of this.engine.kernels.values()) {
      const u = k.cover;
      if (!this.synced.has(u)) {
        // Its journal waits for the next round.
        if (u.journal !== null && (u.journal.pcs.size > 0 || u.journal.signals.size > 0) && !this.pendingSince.has(u)) this.pendingSince.set(u, now);
        continue;
      }
      const idle = !this.whole.has(u) && (u.journal === null || (u.journal.pcs.size === 0 && u.journal.signals.size === 0 && !u.journal.overflow));
      // Nothing to push: the epoch is checked all the same (and the corpus's size read), once a second.
      if (idle && !force && now - (this.checkedAt.get(u) ?? 0) < IDLE_CHECK_MS) continue;
      const j = u.takeJournal();
      const since = this.pendingSince.get(u) ?? now;
      this.pendingSince.delete(u);
      const base = { kernel: k, resets: u.resets, orphan: null, corpus: u.corpus, epoch: this.epochs.get(u)!, since };
      if (this.whole.delete(u)) work.push({ ...base, whole: true, pcs: u.pcs.words(), signals: u.signals.words() });
      else work.push({ ...base, whole: false, pcs: j?.pcs ?? new Uint32Array(0), signals: j?.signals ?? new Uint32Array(0) });
    }
    for (const o of this.orphans.splice(0)) work.push({ kernel: null, whole: false, resets: 0, orphan: o, corpus: o.corpus, epoch: o.epoch, pcs: o.pcs, signals: o.signals, since: o.since });
    let moved = false;
    await Promise.all(work.map(async (w) => {
      let refused = false;
      const flight = { n: (w.pcs.length + w.signals.length) / 2, since: w.since };
      this.inflight.add(flight);
      try {
        if ((await this.pushAll(w.corpus, w.epoch, w.pcs, w.signals, false)) !== null) {
          if (w.kernel !== null) this.checkedAt.set(w.kernel.cover, now);
          return;
        }
        refused = true;
      } catch {
        // unreachable: kept below, retried next round
      } finally {
        this.inflight.delete(flight);
      }
      const k = w.kernel;
      if (k === null) {
        this.orphans.push(refused ? await this.orphanEpoch(w.orphan!) : w.orphan!);
        return;
      }
      if (!this.alive(k)) {
        this.orphans.push({ corpus: w.corpus, pcs: w.pcs, signals: w.signals, since: w.since, epoch: w.epoch });
        return;
      }
      const u = k.cover;
      if (refused && this.epochs.get(u) === w.epoch) {
        // The epoch moved: learn how before any other push.
        this.synced.delete(u);
        moved = true;
      }
      // Back where it came from, unless the union was reset since (its keys are gone for good).
      if (u.resets !== w.resets) return;
      if (w.whole) this.whole.add(u);
      else u.restoreJournal(w.pcs, w.signals);
      if (w.pcs.length + w.signals.length > 0 && !this.pendingSince.has(u)) this.pendingSince.set(u, w.since);
    }));
    // An epoch moved: learn it now rather than a flush interval later.
    if (moved && depth === 0 && this.connected) await this.flushOnce(1);
  }

  /** A deleted kernel's keys that a push refused: dropped when their corpus was reset since, else retried under its epoch. */
  private async orphanEpoch(o: Orphan): Promise<Orphan> {
    try {
      const keys = keysOf(o.corpus);
      const [cur] = await this.trip(o.corpus, [this.script('kcovdSync')(keys.pc, keys.sig, keys.epoch, o.epoch, fresh()) as Promise<string>]);
      if (o.epoch !== '' && generationOf(cur!) > generationOf(o.epoch)) return { ...o, pcs: new Uint32Array(0), signals: new Uint32Array(0) };
      return { ...o, epoch: cur! };
    } catch {
      return o;
    }
  }

  /** Push keys in batches, pipelined; the flags of PCs when `want`; null when the epoch is not `epoch`. */
  private async pushAll(corpus: string, epoch: string, pcs: Uint32Array, signals: Uint32Array, want: boolean): Promise<Pushed> {
    const keys = keysOf(corpus);
    const calls: Promise<unknown>[] = [];
    const n = Math.max(pcs.length, signals.length) / 2;
    const push = this.script('kcovdPush');
    for (let at = 0; at < n || at === 0; at += BATCH) {
      const p = pcs.subarray(Math.min(at * 2, pcs.length), Math.min((at + BATCH) * 2, pcs.length));
      const s = signals.subarray(Math.min(at * 2, signals.length), Math.min((at + BATCH) * 2, signals.length));
      calls.push(push(keys.pc, keys.sig, keys.epoch, bytesOf(p), this.opts.instance, bytesOf(s), want ? '1' : '0', epoch));
      if (n === 0) break;
    }
    const out = (await this.trip(corpus, calls)) as [number, string?, number?, number?][];
    let flags = '';
    for (const r of out) {
      if (r[0] !== 1) return null;
      flags += r[1] ?? '';
    }
    const last = out[out.length - 1]!;
    const size = { pcs: Number(last[2]), signal: Number(last[3]) };
    this.corpora.set(corpus, size);
    return { flags, ...size };
  }

  async claim(k: Kernel, records: Uint32Array, stride: number): Promise<Uint8Array | null> {
    const n = records.length / (stride * 2);
    if (n === 0) return new Uint8Array(0);
    const u = k.cover;
    // Unreachable, out of step, or its slot failing (the rounds find out when it is back): the local answer, without waiting.
    if (!this.connected || !this.synced.has(u) || this.failing.has(u.corpus)) return null;
    const epoch = this.epochs.get(u)!;
    const pcs = new Uint32Array(n * 2);
    for (let i = 0, w = (stride - 1) * 2; i < n; i++, w += stride * 2) {
      pcs[i * 2] = records[w]!;
      pcs[i * 2 + 1] = records[w + 1]!;
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.opts.timeoutMs);
    });
    // The PCs are in the journal too (they entered the union): a claim that fails loses nothing.
    const push = this.pushAll(u.corpus, epoch, pcs, new Uint32Array(0), true);
    push.then((r) => {
      if (r !== null) return;
      // The epoch moved: learn how now.
      if (this.epochs.get(u) === epoch) this.synced.delete(u);
      void this.flush();
    }, () => undefined);
    try {
      const got = await Promise.race([push, late]);
      if (got === 'late' || got === null || got.flags.length !== n) return null;
      const mask = new Uint8Array(n);
      for (let i = 0; i < n; i++) mask[i] = got.flags.charCodeAt(i) === 0x31 ? 1 : 0;
      return mask;
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  async read(k: Kernel): Promise<FleetUnion | null> {
    const u = k.cover;
    // Unreachable, or its last round trip failed (its slot down): the local union at once, not after the client's retries.
    if (!this.connected || this.failing.has(u.corpus)) return null;
    try {
      await this.flushFresh();
      // The push failed or the epoch moved: Redis lacks ours.
      if (!this.synced.has(u) || this.pendingSince.has(u) || this.whole.has(u)) return null;
      const keys = keysOf(u.corpus);
      const [fields, signal, epoch] = (await this.trip<unknown>(u.corpus, [this.client.hkeysBuffer(keys.pc), this.client.scard(keys.sig), this.client.get(keys.epoch)])) as [Buffer[], number, string | null];
      if (epoch !== this.epochs.get(u)) {
        // Reset or lost since our push: the next round learns which.
        this.synced.delete(u);
        return null;
      }
      const all = new BigUint64Array(fields.length);
      const w = new Uint32Array(all.buffer);
      for (let i = 0; i < fields.length; i++) {
        const f = fields[i]!;
        if (f.length !== 8) continue;
        w[i * 2] = f.readUInt32LE(0);
        w[i * 2 + 1] = f.readUInt32LE(4);
      }
      all.sort();
      this.corpora.set(u.corpus, { pcs: fields.length, signal });
      return { pcs: w, signal };
    } catch {
      return null;
    }
  }

  async reset(k: Kernel): Promise<boolean> {
    if (!this.connected) return false;
    const u = k.cover;
    const keys = keysOf(u.corpus);
    try {
      const [e] = await this.trip(u.corpus, [this.script('kcovdReset')(keys.pc, keys.sig, keys.epoch, this.epochs.get(u) ?? '', fresh()) as Promise<string>]);
      if (this.alive(k)) {
        this.epochs.set(u, e!);
        this.synced.add(u);
        this.corpora.set(u.corpus, { pcs: 0, signal: 0 });
      }
      // Other kernels of this corpus here learn it as every other instance does: at the next round.
      for (const other of this.engine.kernels.values()) if (other !== k && other.cover.corpus === u.corpus) this.synced.delete(other.cover);
      void this.flush();
      return true;
    } catch {
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
    for (const f of this.inflight) {
      pending += f.n;
      if (f.n > 0) oldest = Math.min(oldest, f.since);
    }
    const up = this.connected && this.failing.size === 0;
    return {
      kind: 'redis',
      connected: up,
      error: up ? null : this.error,
      pending,
      lagSeconds: oldest === Infinity || pending === 0 ? 0 : (Date.now() - oldest) / 1000,
      roundTrips: this.roundTrips,
      roundTripSeconds: this.roundTripSeconds,
      failures: this.failures,
      resets: this.remoteResets,
    };
  }

  corpusStatus(): CorpusStatus[] {
    const out: CorpusStatus[] = [];
    const live = new Set([...this.engine.kernels.values()].map((k) => k.cover.corpus));
    for (const [corpus, s] of this.corpora) {
      if (live.has(corpus)) out.push({ corpus, pcs: s.pcs, signal: s.signal });
      else this.corpora.delete(corpus);
    }
    return out;
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
