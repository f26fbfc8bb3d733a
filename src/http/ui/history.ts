/**
 * Coverage over time for the dashboard: a bounded history of samples of every
 * kernel's and every descriptor's count, kept on the server so a reloaded page
 * still shows the curve (syz-manager's coverage graph is server-side too).
 *
 * - A sample is taken every `sampleMs` (KCOV_UI_SAMPLE_MS) when something moved:
 *   a count differs from the last sample, a kernel or descriptor came or went, or
 *   the kernel announced a change (Kernel.watch, armed once per tick, so the hot
 *   path pays for at most one listener call per tick).
 * - At most `points` (KCOV_UI_HISTORY) samples are held. When full, every other
 *   sample is dropped, so the history always spans the whole run at a coarser
 *   step (the newest sample is always kept).
 * - Memory: one Float64Array of `points` values per series (a kernel's total or a
 *   descriptor's count) plus the shared times and sequence numbers, all charged to
 *   the engine's MemoryBudget before they exist, at most 1/16 of it in all (areas come
 *   first). A series the budget cannot hold is not tracked and is counted in `untracked` (shown on the page), never dropped
 *   in silence. A series is released when its kernel or descriptor goes away.
 */
import { KcovError } from '../../engine/errno.js';
import type { Engine } from '../../engine/engine.js';
import type { Kernel } from '../../engine/kernel.js';
import type { Descriptor } from '../../engine/model.js';

export interface HistoryOptions {
  /** Samples held (even, at least 4). */
  readonly points: number;
  /** Milliseconds between sampling ticks; 0 turns sampling off. */
  readonly sampleMs: number;
}

interface Series {
  /** [I] kernel's name and the descriptor's fd (null: the kernel's total). */
  readonly kernel: string;
  readonly fd: number | null;
  /** [E] value at each held sample; NaN before the series existed. */
  readonly values: Float64Array;
  /** [E] tick that last saw the object; older means it is gone. */
  seen: number;
  /** [E] value read in the current tick, written by append. */
  now: number;
  /** [E] value at the newest held sample (NaN: none yet); kept out of `values` so a tick reads no big array. */
  last: number;
}

export interface HistoryReply {
  seq: number;
  sample_ms: number;
  points: number;
  t: number[];
  series: { kernel: string; fd: number | null; values: (number | null)[] }[];
  untracked: number;
}

type Gone = { once(ev: 'close', fn: () => void): unknown; off(ev: 'close', fn: () => void): unknown };

/** The history takes at most 1/16 of KCOV_MEMORY_LIMIT. */
export const HISTORY_SHARE = 16;

/** The kernel's coverage over time: the count of every descriptor added up. */
function countOf(d: Descriptor): number {
  const t = d.trace();
  return t === null ? 0 : t.count;
}

export class CoverageHistory {
  readonly points: number;
  readonly sampleMs: number;
  /** [E] sequence number of the newest sample (0: none yet). */
  seq = 0;
  /** [E] live kernels and descriptors the budget had no room to track, at the last tick. */
  untracked = 0;
  /** [E] bytes charged to the budget, released at close. */
  charged = 0;

  private readonly engine: Engine;
  private readonly seriesBytes: number;
  /** [I] the history never takes more than this share of the budget, so it cannot starve the areas. */
  private readonly maxBytes: number;
  private times: Float64Array | null = null;
  private seqs: Float64Array | null = null;
  private n = 0;
  private tickNo = 0;
  private dirty = true;
  private readonly series = new Map<Kernel | Descriptor, Series>();
  private readonly armed = new Map<Kernel, () => void>();
  /** [E] sizes of each kernel's tables at the last walk. */
  private readonly shapes = new Map<Kernel, { d: number; t: number; r: number }>();
  private readonly waiters = new Set<() => void>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(engine: Engine, opts: HistoryOptions) {
    if (!Number.isInteger(opts.points) || opts.points < 4 || opts.points % 2 !== 0) {
      throw new Error(`history points must be an even integer >= 4, not ${opts.points}`);
    }
    this.engine = engine;
    this.points = opts.points;
    this.sampleMs = opts.sampleMs;
    this.seriesBytes = opts.points * 8;
    this.maxBytes = Math.floor(engine.budget.limit / HISTORY_SHARE);
  }

  /** Start the sampling timer (unref'd: it never keeps the process alive). */
  start(): void {
    if (this.sampleMs <= 0 || this.timer !== null || this.closed) return;
    this.timer = setInterval(() => this.tick(), this.sampleMs);
    this.timer.unref();
    this.tick();
  }

  /** Take a sample now if anything moved since the last one; true when one was taken. */
  tick(): boolean {
    if (this.closed) return false;
    if (this.times === null && !this.chargeBytes(2 * this.seriesBytes)) {
      this.untracked = this.liveObjects();
      return false;
    }
    // An idle service costs a look at each kernel, not a walk over every descriptor.
    if (!this.dirty && this.n > 0 && this.quiet()) return false;
    const tick = ++this.tickNo;
    let changed = this.dirty;
    this.dirty = false;
    let untracked = 0;
    for (const k of this.engine.kernels.values()) {
      this.arm(k);
      const shape = this.shapes.get(k);
      if (shape === undefined || shape.d !== k.descriptors.size || shape.t !== k.threads.size || shape.r !== k.remotes.count) {
        this.shapes.set(k, { d: k.descriptors.size, t: k.threads.size, r: k.remotes.count });
        changed = true; // the page's tables change even when no count does
      }
      let total = 0;
      for (const d of k.descriptors.values()) {
        const c = countOf(d);
        total += c;
        const s = this.series.get(d) ?? this.track(d, k.name, d.fd);
        if (s === null) {
          untracked++;
          continue;
        }
        s.seen = tick;
        s.now = c;
        if (s.last !== c) changed = true;
      }
      const s = this.series.get(k) ?? this.track(k, k.name, null);
      if (s === null) {
        untracked++;
        continue;
      }
      s.seen = tick;
      s.now = total;
      if (s.last !== total) changed = true;
    }
    for (const [obj, s] of this.series) {
      if (s.seen === tick) continue;
      this.series.delete(obj);
      this.release(this.seriesBytes);
      changed = true;
    }
    for (const [k, off] of this.armed) {
      if (this.engine.kernels.get(k.name) !== k) {
        off();
        this.armed.delete(k);
      }
    }
    for (const k of this.shapes.keys()) if (this.engine.kernels.get(k.name) !== k) this.shapes.delete(k);
    this.untracked = untracked;
    if (!changed) return false;
    this.append(Date.now());
    return true;
  }

  /** A new series for a kernel or descriptor, or null when the budget has no room for it. */
  private track(obj: Kernel | Descriptor, kernel: string, fd: number | null): Series | null {
    if (!this.chargeBytes(this.seriesBytes)) return null;
    const s: Series = { kernel, fd, values: new Float64Array(this.points).fill(NaN), seen: 0, now: 0, last: NaN };
    this.series.set(obj, s);
    return s;
  }

  /** Nothing can have moved: no kernel announced a change; no kernel, descriptor, thread or remote came or went. */
  private quiet(): boolean {
    const kernels = this.engine.kernels;
    if (kernels.size !== this.shapes.size) return false;
    for (const k of kernels.values()) {
      const s = this.shapes.get(k);
      if (s === undefined || !this.armed.has(k) || s.d !== k.descriptors.size || s.t !== k.threads.size || s.r !== k.remotes.count) return false;
    }
    return true;
  }

  private append(now: number): void {
    const times = this.times!;
    const seqs = this.seqs!;
    if (this.n === this.points) this.thin();
    const i = this.n++;
    times[i] = now;
    seqs[i] = ++this.seq;
    for (const s of this.series.values()) {
      s.values[i] = s.now;
      s.last = s.now;
    }
    for (const w of [...this.waiters]) w();
  }

  /** Keep every other sample (the later one of each pair, so the newest stays). */
  private thin(): void {
    const half = this.n >> 1;
    const arrays: Float64Array[] = [this.times!, this.seqs!];
    for (const s of this.series.values()) arrays.push(s.values);
    for (const a of arrays) {
      for (let j = 0; j < half; j++) a[j] = a[2 * j + 1]!;
      a.fill(NaN, half);
    }
    this.n = half;
  }

  /** One change listener per kernel until it fires: it only marks the next tick dirty. */
  private arm(k: Kernel): void {
    if (this.armed.has(k)) return;
    let off: () => void;
    try {
      off = k.watch(() => {
        this.dirty = true;
        off();
        this.armed.delete(k);
      });
    } catch (e) {
      // A listener is a charged waiter: with the budget full, this kernel is walked on every tick instead.
      if (e instanceof KcovError && e.errno === 'ENOMEM') {
        this.dirty = true;
        return;
      }
      throw e;
    }
    this.armed.set(k, off);
  }

  private liveObjects(): number {
    let n = 0;
    for (const k of this.engine.kernels.values()) n += 1 + k.descriptors.size;
    return n;
  }

  private chargeBytes(bytes: number): boolean {
    const b = this.engine.budget;
    // Checked first: a full budget is the normal case here, not an error to throw per tick.
    if (bytes > b.limit - b.used || this.charged + bytes > this.maxBytes) return false;
    b.charge(bytes, 'dashboard history', 'other');
    this.charged += bytes;
    if (this.times === null) {
      this.times = new Float64Array(this.points);
      this.seqs = new Float64Array(this.points);
    }
    return true;
  }

  private release(bytes: number): void {
    this.engine.budget.release(bytes, 'other');
    this.charged -= bytes;
  }

  /** Samples newer than `after` (all held ones for 0), with every tracked series. */
  since(after: number): HistoryReply {
    let from = 0;
    const seqs = this.seqs;
    if (seqs !== null) {
      // seqs ascend; first index whose seq is past `after`.
      let lo = 0;
      let hi = this.n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (seqs[mid]! > after) hi = mid;
        else lo = mid + 1;
      }
      from = lo;
    }
    const t = this.times === null ? [] : Array.from(this.times.subarray(from, this.n));
    const series: HistoryReply['series'] = [];
    // Engine order: kernels as created, then their descriptors by fd, each kernel's total first.
    for (const k of this.engine.kernels.values()) {
      const ks = this.series.get(k);
      if (ks !== undefined) series.push(this.view(ks, from));
      for (const d of k.descriptors.values()) {
        const ds = this.series.get(d);
        if (ds !== undefined) series.push(this.view(ds, from));
      }
    }
    return { seq: this.seq, sample_ms: this.sampleMs, points: this.points, t, series, untracked: this.untracked };
  }

  private view(s: Series, from: number): HistoryReply['series'][number] {
    const values: (number | null)[] = [];
    for (let i = from; i < this.n; i++) {
      const v = s.values[i]!;
      values.push(Number.isNaN(v) ? null : v);
    }
    return { kernel: s.kernel, fd: s.fd, values };
  }

  /** Resolve once a sample other than `after` is the newest, after `ms`, when the client leaves, or at close. */
  wait(after: number, ms: number, gone: Gone): Promise<void> {
    // `after` past the newest sample names another start of the service: answer at once.
    if (this.seq !== after || ms <= 0 || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        gone.off('close', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      gone.once('close', done);
      this.waiters.add(done);
    });
  }

  /** Stop sampling, answer every waiter, give every byte back to the budget. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const off of this.armed.values()) off();
    this.armed.clear();
    for (const w of [...this.waiters]) w();
    this.series.clear();
    this.shapes.clear();
    if (this.charged > 0) this.release(this.charged);
    this.times = null;
    this.seqs = null;
    this.n = 0;
  }
}
