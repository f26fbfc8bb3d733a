/**
 * Cumulative coverage of one kernel: the union of every PC any of its
 * descriptors recorded (CMP records contribute their PCs), and the set of
 * distinct syzkaller edge signals of those traces (PC mode only; see
 * signal.ts). Both survive count resets, closes and re-inits; only
 * DELETE /cover (reset()) or the kernel's deletion empties them.
 *
 * Lazy folding keeps the ingestion path untouched: a record is folded into
 * the union only when something is about to need it. Each mapped trace (the
 * count word and records a descriptor's mmap shows) has a mark: `wm`, the
 * records [0, wm) already folded. Records only ever get appended above the
 * count between two Kernel gate calls, so [wm, min(count, capacity)) is
 * exactly what is pending. The Kernel calls settle() before every operation
 * that may lower a count, re-map, re-init or free an area (its gate: ioctl,
 * close, PUT count, ?reset, thread exit, remote unregister, kernel delete)
 * and resync() after it; reads of the union and ?new call settle() first.
 * An area whose count went below its mark between two gates was changed
 * outside the gate: checkInvariants reports it.
 *
 * What is new: each mark also has an epoch `gen` (new at every count reset
 * or re-init). A PC folded by a settle that was not a ?new read keeps that
 * epoch as its tag, meaning "first seen in this area epoch, not yet
 * reported". ?new on the area then reports every record whose PC is either
 * absent or tagged with the area's own epoch, and re-tags it REPORTED. So a
 * reader of /cover (a dashboard) never steals newness from a fuzzer's
 * ?new=true, and each PC is reported new at most once per union: by the
 * area that recorded it first (first folded).
 */
import { PC_STRIDE, strideOf, type Area } from '../area.js';
import type { Kernel } from '../kernel.js';
import type { Descriptor } from '../model.js';
import { fail } from '../errno.js';
import { foldRecords, PcSet, type Charger } from './pcset.js';
import { EDGE_HASH } from './signal.js';

/** Records a background fold slice takes at most (about half a millisecond). */
export const FOLD_SLICE = 65536;
/**
 * Records the fold may leave pending while batches keep coming (about a third of a
 * second of folding): past it, slices run between requests without waiting for a pause.
 */
export const FOLD_BACKLOG = 1 << 25;

/** Tag of a PC already reported new (or learned from the fleet): never new again. */
export const REPORTED = 1;

interface Mark {
  trace: Area;
  stride: number;
  /** Records [0, wm) are folded. */
  wm: number;
  /** Epoch of the area's records (tag of PCs it folded and has not reported yet). */
  gen: number;
  /** PCs folded with this epoch's tag and not reported since (an upper bound: the fleet may re-tag some). */
  unreported: number;
}

/** Where the marks stood before a gated operation (CoverUnion.standing). */
export interface Standing {
  readonly d: Descriptor | undefined;
  /** The buffer `d` mapped, or null. */
  readonly buf: ArrayBuffer | null;
  readonly before: Map<Mark, number>;
}

/** What ?new=true found in one area. */
export interface NewRecords {
  /** The new records, `stride` words each, as little-endian words. */
  readonly records: Uint32Array;
  readonly stride: number;
  /** Records shown by the area (min(count, capacity)). */
  readonly visible: number;
  /** Count word as stored. */
  readonly count: number;
  readonly words: number;
}

/** Keys that entered the union since the fleet last took them. */
export interface Journal {
  readonly pcs: PcSet;
  readonly signals: PcSet;
  /** The journal could not hold a key (budget): the fleet must push the whole union. */
  overflow: boolean;
}

export class CoverUnion {
  /** [I] fleet name of the union (POST /v1/kernels `corpus`, default the kernel's name). */
  readonly corpus: string;
  readonly pcs: PcSet;
  readonly signals: PcSet;
  /** [K] set by the fleet; null without one. */
  journal: Journal | null = null;
  /** PCs and signals the budget had no room for (not in the union). */
  lost = 0;
  /** PCs ?new=true reported new, since the kernel was created. */
  reported = 0;
  /** Union resets (DELETE /cover). */
  resets = 0;
  private readonly kernel: Kernel;
  private readonly budget: Charger;
  private readonly marks = new Map<ArrayBuffer, Mark>();
  private nextGen = 2;

  /** [I] false with KCOV_COVER=off: nothing is folded, /cover and ?new=true are EOPNOTSUPP. */
  readonly enabled: boolean;

  /**
   * [I] runs a function later (Engine.background): at the next pause in the traffic when
   * `idle`, else between requests; false: not now, gates fold instead.
   */
  private readonly later: ((fn: () => void, idle: boolean) => boolean) | null;
  /** [K] a background slice is queued. */
  private queued = false;
  /** [K] records appended and not yet folded by a slice (a gate's folds are not subtracted: an upper bound). */
  private pending = 0;
  /** [K] batches appended, and their number when the queued slice was queued: a slice that finds more waits for a pause. */
  private appends = 0;
  private appendsQueued = 0;
  /**
   * [K] marks of freed areas whose records are not folded yet, oldest first. Each area
   * stays live and charged until a slice (or a gate, or memory pressure) folds it: a
   * descriptor closed at the end of a program does not wait for its trace's fold.
   */
  private readonly retired: Mark[] = [];
  private released = false;

  constructor(kernel: Kernel, budget: Charger, corpus: string, enabled = true, later: ((fn: () => void, idle: boolean) => boolean) | null = null) {
    this.later = later;
    this.enabled = enabled;
    this.kernel = kernel;
    this.budget = budget;
    this.corpus = corpus;
    this.pcs = new PcSet(budget, `cover union of kernel "${kernel.name}"`);
    this.signals = new PcSet(budget, `signal set of kernel "${kernel.name}"`);
  }

  /** Bytes charged to the budget. */
  get bytes(): number {
    return this.pcs.bytes + this.signals.bytes + (this.journal === null ? 0 : this.journal.pcs.bytes + this.journal.signals.bytes);
  }

  /** What descriptor `d` maps now (one trace and its stride), or null. */
  private mappedBy(d: Descriptor): { trace: Area; stride: number } | null {
    const k = this.kernel;
    let m: { trace: Area; mode: 'pc' | 'cmp' } | null;
    try {
      m = k.dialect.mapped !== undefined ? k.dialect.mapped(k, d) : plainMapping(d);
    } catch {
      m = null; // the dialect's mmap fails: nothing mapped
    }
    return m === null ? null : { trace: m.trace, stride: strideOf(m.mode) };
  }

  /** The traces descriptors map now, one per buffer: open descriptors, and closed ones a tracing thread still holds. */
  private sources(): Map<ArrayBuffer, { trace: Area; stride: number }> {
    const k = this.kernel;
    const out = new Map<ArrayBuffer, { trace: Area; stride: number }>();
    const of = (d: Descriptor) => {
      const s = this.mappedBy(d);
      if (s !== null && !out.has(s.trace.buffer)) out.set(s.trace.buffer, s);
    };
    for (const d of k.descriptors.values()) of(d);
    for (const t of k.threads.values()) if (t.kcov !== null && t.kcov.closed) of(t.kcov);
    return out;
  }

  /**
   * Fold every pending record. The marks are exactly the mapped traces (every
   * change of what is mapped is a gated operation, and resync() follows each;
   * checkInvariants holds it), so this walks the marks, not the descriptors.
   */
  settle(): void {
    if (!this.enabled) return;
    this.flushRetired();
    for (const m of this.marks.values()) this.fold(m);
  }

  /** Fold what freed areas still hold and give them back (a gate, memory pressure, a memory view). */
  flushRetired(): void {
    while (this.retired.length > 0) this.finish(this.retired.shift()!);
  }

  /** A freed area taken off `retired`: the rest of its records folded, then freed at last. */
  private finish(m: Mark): void {
    this.fold(m);
    this.kernel.account.freeArea(m.trace);
  }

  /**
   * An area of `bytes` is being allocated: a freed one of that size still waiting for its
   * fold is folded now and freed, so the pool gives its pages to the new one (a fresh
   * 192 MiB area costs 135 ms of page faults) instead of both being held.
   */
  flushRetiredOfSize(bytes: number): void {
    const i = this.retired.findIndex((m) => m.trace.buffer.byteLength === bytes);
    if (i < 0) return;
    this.finish(this.retired.splice(i, 1)[0]!);
  }

  /** Buffers of freed areas waiting for their fold (live, charged; for the invariant checker). */
  retiredBuffers(): ArrayBuffer[] {
    return this.retired.map((m) => m.trace.buffer);
  }

  /**
   * Records were appended: fold them in the background, FOLD_SLICE records at a
   * time, once the traffic pauses (a program streaming its trace is not slowed by
   * the fold; a pause, a gate or FOLD_BACKLOG pending records end the wait), so
   * that a gate (a reset, a close, a thread exit) finds little left to fold.
   * Folding later changes nothing a reader can see: a mark's records get the same
   * tag whenever they are folded, and every read of the union is a gate.
   */
  appended(records: number): void {
    if (!this.enabled || this.later === null) return;
    this.pending += records;
    this.appends++;
    if (!this.queued) this.queue(this.pending < FOLD_BACKLOG && this.retired.length === 0);
  }

  private queue(idle: boolean): void {
    this.appendsQueued = this.appends;
    this.queued = this.later!(this.foldSlice, idle);
  }

  private readonly foldSlice = (): void => {
    this.queued = false;
    if (this.released) return;
    // Batches came since this slice was queued: not a pause yet.
    // Freed areas waiting for their fold hold memory: they do not wait for a pause.
    if (this.appends !== this.appendsQueued && this.pending < FOLD_BACKLOG && this.retired.length === 0) return this.queue(true);
    let left = FOLD_SLICE;
    while (left > 0 && this.retired.length > 0) {
      const m = this.retired[0]!;
      left -= this.fold(m, left);
      if (this.retired[0] !== m) continue; // memory pressure (MemoryBudget.reclaim) flushed it meanwhile
      if (m.wm < m.trace.visible(m.stride)) break;
      this.finish(this.retired.shift()!);
    }
    for (const m of this.marks.values()) {
      if (left <= 0) break;
      left -= this.fold(m, left);
    }
    this.pending = left > 0 ? 0 : Math.max(0, this.pending - FOLD_SLICE);
    if (left <= 0) this.queue(false); // there may be more: go on between requests
  };

  /**
   * `area` is about to be freed (by any path, gated or not): its records are folded,
   * now or, when the background can (true: the caller must not free it), later.
   */
  freeing(area: Area): boolean {
    const m = this.marks.get(area.buffer);
    if (m === undefined) return false;
    this.marks.delete(area.buffer);
    if (this.later !== null && !this.released && m.wm < m.trace.visible(m.stride) && this.pending < FOLD_BACKLOG) {
      // Only with a slice queued to fold it (no background: folded now, as before).
      if (!this.queued) this.queue(false);
      if (this.queued) {
        this.retired.push(m);
        return true;
      }
    }
    this.fold(m);
    return false;
  }

  /**
   * Before an operation that writes no record but may lower a count, re-map or
   * free an area (an ioctl, a count write, a reset, a close): where each mark
   * stands (its visible records), without folding. resyncAfter() folds what the
   * operation hid and leaves the rest pending for the background: disabling and
   * closing at the end of a program does not wait for its trace's fold.
   * `d`: the operation touches this descriptor only (its mark is noted); else all.
   */
  standing(d?: Descriptor): Standing {
    const before = new Map<Mark, number>();
    if (!this.enabled) return { d, buf: null, before };
    if (d === undefined) {
      for (const m of this.marks.values()) before.set(m, m.trace.visible(m.stride));
      return { d, buf: null, before };
    }
    const buf = this.mappedBy(d)?.trace.buffer ?? null;
    const m = buf === null ? undefined : this.marks.get(buf);
    if (m !== undefined) before.set(m, m.trace.visible(m.stride));
    return { d, buf, before };
  }

  /** After such an operation: records it hid are folded (as the trace was), and the marks follow the traces. */
  resyncAfter(st: Standing): void {
    if (!this.enabled) return;
    const { before } = st;
    if (st.d !== undefined && st.buf !== null) {
      // One descriptor that still maps the same buffer (nearly every ioctl, count write and reset): O(1).
      const s = this.mappedBy(st.d);
      const m = this.marks.get(st.buf);
      if (m !== undefined && s !== null && s.trace.buffer === st.buf) return this.follow(m, s, before.get(m));
    }
    const current = this.sources();
    for (const [buf, m] of this.marks) {
      if (current.has(buf)) continue;
      // Unmapped, not freed (freeing() took freed ones): its records are intact up to where they stood.
      this.fold(m, Infinity, before.get(m));
      this.marks.delete(buf);
    }
    for (const [buf, s] of current) {
      const m = this.marks.get(buf);
      if (m === undefined) {
        this.marks.set(buf, { trace: s.trace, stride: s.stride, wm: s.trace.visible(s.stride), gen: this.nextGen++, unreported: 0 });
        continue;
      }
      this.follow(m, s, before.get(m));
    }
  }

  /** A mark after an operation that may have moved its trace's count (`was`: what it showed before, if noted). */
  private follow(m: Mark, s: { trace: Area; stride: number }, was: number | undefined): void {
    // Nothing moved: what is pending stays pending.
    const vis = s.trace.visible(s.stride);
    if (m.trace === s.trace && m.stride === s.stride && (was === undefined ? vis >= m.wm : vis === was)) return;
    // A count moved or the trace was re-mapped: fold what the trace showed, then follow it.
    this.fold(m, Infinity, was);
    this.adopt(m, s.trace, s.stride);
  }

  /** After a gated operation: what the traces hold now is accounted for. */
  resync(): void {
    if (!this.enabled) return;
    const current = this.sources();
    for (const [buf, s] of current) {
      const m = this.marks.get(buf);
      if (m === undefined) {
        this.marks.set(buf, { trace: s.trace, stride: s.stride, wm: s.trace.visible(s.stride), gen: this.nextGen++, unreported: 0 });
        continue;
      }
      this.adopt(m, s.trace, s.stride);
    }
    for (const buf of this.marks.keys()) if (!current.has(buf)) this.marks.delete(buf);
  }

  /** The mark of a trace after a gated change to it: a count moved down (reset, PUT count) starts a new epoch of records. */
  private adopt(m: Mark, trace: Area, stride: number): void {
    const vis = trace.visible(stride);
    if (vis < m.wm || m.trace !== trace) {
      m.gen = this.nextGen++;
      m.unreported = 0;
    }
    m.trace = trace;
    m.stride = stride;
    m.wm = vis;
  }

  /** Fold the pending records of a trace, at most `limit` of them, up to record `end` (default: what it shows); returns how many. */
  private fold(m: Mark, limit = Infinity, end?: number): number {
    const trace = m.trace;
    const vis = end ?? trace.visible(m.stride);
    if (vis <= m.wm) {
      m.wm = Math.min(m.wm, vis);
      return 0;
    }
    const u = trace.u32;
    const stride = m.stride;
    const n = Math.min(vis - m.wm, limit);
    const j = this.journal;
    // PC of record i: its last word (PC mode: the record; CMP: type, arg1, arg2, pc).
    const w = (1 + m.wm * stride + stride - 1) * 2;
    const pcMode = stride === PC_STRIDE;
    const prev = pcMode && m.wm > 0 ? u[w - 2]! : 0;
    const f = foldRecords(u, w, stride * 2, n, m.gen, this.pcs, pcMode ? this.signals : null, EDGE_HASH, prev, j?.pcs ?? null, j?.signals ?? null);
    m.unreported += f.pcs;
    this.lost += f.refused;
    if (f.journalRefused) j!.overflow = true;
    m.wm += n;
    return n;
  }

  /**
   * ?new=true: settle, then the records of `trace` whose PC is new (absent,
   * or first folded from this very area epoch and not yet reported), in area
   * order, each PC once. They are marked reported. Synchronous: the caller
   * resets the count (if asked) in the same tick, so both are one step.
   */
  takeNew(trace: Area, mode: 'pc' | 'cmp'): NewRecords {
    this.requireEnabled();
    this.settle();
    const stride = strideOf(mode);
    const m = this.marks.get(trace.buffer);
    const own = m !== undefined && m.trace === trace && m.stride === stride;
    const gen = own ? m.gen : -1;
    // Records below the mark that are not in the union were accounted for without being recorded:
    // stale words shown after a count written upwards, or records from before DELETE /cover.
    const accounted = own ? m.wm : 0;
    const vis = trace.visible(stride);
    // Nothing of this epoch is unreported and everything shown is folded: nothing is new, no scan.
    if (own && m.unreported === 0) return { records: new Uint32Array(0), stride, visible: vis, count: trace.count, words: trace.words };
    const u = trace.u32;
    const pcs = this.pcs;
    const hits: number[] = [];
    for (let i = 0, w = (1 + stride - 1) * 2; i < vis; i++, w += stride * 2) {
      const lo = u[w]!, hi = u[w + 1]!;
      const slot = pcs.find(lo, hi);
      if (slot < 0) {
        if (i < accounted) continue;
        // Not folded (read in another mode than written): add it now.
        const r = pcs.add(lo, hi, REPORTED);
        if (r === -2) {
          this.lost++;
          continue;
        }
        if (this.journal !== null && this.journal.pcs.add(lo, hi, 1) === -2) this.journal.overflow = true;
        hits.push(i);
      } else if (pcs.tagAt(slot) === gen) {
        pcs.setTag(slot, REPORTED);
        hits.push(i);
      }
    }
    const records = new Uint32Array(hits.length * stride * 2);
    for (let n = 0; n < hits.length; n++) {
      const from = (1 + hits[n]! * stride) * 2;
      records.set(u.subarray(from, from + stride * 2), n * stride * 2);
    }
    this.reported += hits.length;
    if (own) m.unreported = 0;
    return { records, stride, visible: vis, count: trace.count, words: trace.words };
  }

  /** EOPNOTSUPP when the service runs with KCOV_COVER=off. */
  requireEnabled(): void {
    if (!this.enabled) fail('EOPNOTSUPP', `cumulative coverage is off (KCOV_COVER=off): kernel "${this.kernel.name}" keeps no union`);
  }

  /** A PC some other instance of the fleet found first: known, never new here. */
  learn(lo: number, hi: number): void {
    const slot = this.pcs.find(lo, hi);
    if (slot >= 0) this.pcs.setTag(slot, REPORTED);
    else if (this.pcs.add(lo, hi, REPORTED) === -2) this.lost++;
  }

  /** DELETE /cover: empty the union; what the areas hold now is not in the new one. */
  reset(): void {
    this.settle();
    this.pcs.clear();
    this.signals.clear();
    if (this.journal !== null) {
      this.journal.pcs.clear();
      this.journal.signals.clear();
      this.journal.overflow = false;
    }
    for (const m of this.marks.values()) {
      m.gen = this.nextGen++;
      m.unreported = 0;
    }
    this.resets++;
  }

  /** Start keeping a journal for the fleet (charged to the budget). */
  startJournal(): Journal {
    if (this.journal === null) {
      const what = `fleet journal of kernel "${this.kernel.name}"`;
      this.journal = { pcs: new PcSet(this.budget, what), signals: new PcSet(this.budget, what), overflow: false };
    }
    return this.journal;
  }

  /** Take what the journal holds (little-endian words of PCs and signals) and empty it. */
  takeJournal(): { pcs: Uint32Array; signals: Uint32Array; overflow: boolean } | null {
    const j = this.journal;
    if (j === null || (j.pcs.size === 0 && j.signals.size === 0 && !j.overflow)) return null;
    const out = j.overflow
      ? { pcs: this.pcs.words(), signals: this.signals.words(), overflow: true }
      : { pcs: j.pcs.words(), signals: j.signals.words(), overflow: false };
    j.pcs.clear();
    j.signals.clear();
    j.overflow = false;
    return out;
  }

  /** Put back what a failed push took, so nothing is lost. */
  restoreJournal(pcs: Uint32Array, signals: Uint32Array): void {
    const j = this.journal;
    if (j === null) return;
    for (let i = 0; i < pcs.length; i += 2) if (j.pcs.add(pcs[i]!, pcs[i + 1]!, 1) === -2) j.overflow = true;
    for (let i = 0; i < signals.length; i += 2) if (j.signals.add(signals[i]!, signals[i + 1]!, 1) === -2) j.overflow = true;
  }

  /** Called once before release() (the fleet takes the journal's last keys). */
  onRelease: ((union: CoverUnion) => void) | null = null;

  /** Release every byte (the kernel is being deleted). */
  release(): void {
    this.released = true;
    this.onRelease?.(this);
    this.onRelease = null;
    this.pcs.release();
    this.signals.release();
    if (this.journal !== null) {
      this.journal.pcs.release();
      this.journal.signals.release();
    }
    this.marks.clear();
    this.retired.length = 0; // the kernel settled (flushRetired) before it frees everything
  }

  /** Broken rules, for checkInvariants. */
  check(at: string, out: string[]): void {
    this.pcs.check(`${at}: cover union`, out);
    this.signals.check(`${at}: signal set`, out);
    if (this.journal !== null) {
      this.journal.pcs.check(`${at}: fleet journal`, out);
      this.journal.signals.check(`${at}: fleet journal signals`, out);
    }
    if (this.enabled) {
      const current = this.sources();
      for (const [buf, s] of current) {
        const m = this.marks.get(buf);
        if (m === undefined) out.push(`${at}: a mapped trace has no cover mark (mapped outside the kernel's gate)`);
        else if (m.trace !== s.trace || m.stride !== s.stride) out.push(`${at}: a cover mark is stale: the trace was re-mapped outside the kernel's gate`);
      }
      for (const buf of this.marks.keys()) if (!current.has(buf)) out.push(`${at}: a cover mark on a trace nothing maps`);
    }
    for (const m of this.retired) {
      if (!this.kernel.account.isLive(m.trace.buffer)) out.push(`${at}: a freed area waiting for its fold is not live`);
      if (this.marks.has(m.trace.buffer)) out.push(`${at}: a freed area waiting for its fold is still mapped`);
    }
    if (!this.enabled && this.retired.length > 0) out.push(`${at}: freed areas wait for a fold with KCOV_COVER=off`);
    for (const m of this.marks.values()) {
      if (!this.kernel.account.isLive(m.trace.buffer)) out.push(`${at}: cover mark on an area that is not live`);
      const vis = m.trace.visible(m.stride);
      if (m.wm > vis) out.push(`${at}: an area's count went below its folded mark (${vis} < ${m.wm}) outside the kernel's gate`);
    }
  }
}

/** What mmap of a descriptor shows when the dialect has no mapped() of its own (Kernel.mapping's default). */
function plainMapping(d: Descriptor): { trace: Area; mode: 'pc' | 'cmp' } | null {
  const trace = d.trace();
  if (d.area === null || trace === null) return null;
  return { trace, mode: d.mode ?? d.lastMode };
}
