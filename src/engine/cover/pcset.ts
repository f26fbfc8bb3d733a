/**
 * A set of 64-bit values (PCs, signals) as an open-addressing hash with
 * linear probing over one Uint32Array of 3-word slots [lo, hi, tag]: one
 * cache line per probe (the table of a real kernel's coverage is far larger
 * than the caches). Tag 0 marks an empty slot. It doubles when 3/4 full;
 * every byte is charged to the memory budget before it is allocated, so
 * growing past KCOV_MEMORY_LIMIT fails (the caller counts what it could not
 * add) instead of taking memory the budget does not know about.
 *
 * A tag is the caller's: the cover union keeps which area epoch folded a PC
 * in it (see union.ts); a plain set stores 1.
 *
 * In front of the table, a presence window: one bit per address of the span
 * [winLo, winLo + winSpan) of high half winHi, set for every key of the set
 * in that span (and for keys a full set refused: see refuse()). PCs (and the edge signals made from them) of one program lie in a
 * span of a few MiB, and a trace repeats them millions of times: foldRecords()
 * answers "already there" with one bit test instead of a hash probe, which
 * makes folding a trace cost little more than reading it. The window is chosen
 * again at every doubling, from the keys then held (amortised over them),
 * charged with the table, and dropped when the budget refuses it: keys outside
 * it take the probe.
 *
 * Deliberately not a resizable buffer like the table: V8 compiles element
 * access through a view of one to twice the cost, and the window is what the
 * fold reads for every record (14 against 6 ns a record, measured). Its bits
 * are kept and reused in place when the window is chosen again, so the only
 * garbage it leaves for a collection is a smaller predecessor when the span
 * grows and the last one when the set is emptied: at most 2 * MAX_SPAN / 8
 * bytes (4 MiB) over a set's life.
 */
import { allocTable, freeTable } from '../tables.js';
/** Where a set's bytes are charged: the memory budget, or a kernel's account of it. */
export interface Charger {
  /** Take `bytes` or throw (ENOMEM), taking nothing. */
  charge(bytes: number, what: string): void;
  release(bytes: number): void;
}

export const EMPTY = 0;
const MIN_SLOTS = 1024;
/** Window spans, in addresses (one bit each): 8 KiB to 2 MiB of bits. */
const MIN_SPAN = 2 ** 16;
const MAX_SPAN = 2 ** 24;
const NO_WINDOW = new Uint32Array(0);

/** After the budget refused a doubling, adds that wait before the next try (memory may have been freed since). */
const RETRY_GROWTH = 4096;
/** Probes for present keys outside the window (at least this many, and a quarter of the keys) before it is chosen again. */
const REWINDOW_MIN = 65536;
/** Bytes per slot: lo, hi and tag words. */
export const SLOT_BYTES = 12;

/** Slot hash of (lo, hi): the murmur3 finalizer over lo ^ hi*golden. */
function mix(lo: number, hi: number): number {
  let h = lo ^ Math.imul(hi, 0x9e3779b1);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16); // int32 (a Smi): & mask makes it a slot
}

export class PcSet {
  /** [I] */
  private readonly budget: Charger;
  private readonly what: string;
  /** Slot i is t[3i] (lo), t[3i+1] (hi), t[3i+2] (tag). */
  private t: Uint32Array;
  /** Keys held. */
  size = 0;
  /** Bytes charged to the budget. */
  bytes = 0;
  private mask: number;
  /** Adds left before a refused growth is tried again. */
  private backoff = 0;
  /** Presence bits of the window (NO_WINDOW when there is none), bits [0, winSpan) in use; all its bytes are in `bytes`, and it outlives the window for the next one. */
  win: Uint32Array = NO_WINDOW;
  /** The window: high half, first low half, span (0: no window). */
  winHi = 0;
  winLo = 0;
  winSpan = 0;

  /** Empty sets hold no table (and no budget) until the first key. */
  constructor(budget: Charger, what: string) {
    this.budget = budget;
    this.what = what;
    this.t = new Uint32Array(0);
    this.mask = -1;
  }

  get slots(): number {
    return this.mask + 1;
  }

  /** Slot of the key, or -1. */
  find(lo: number, hi: number): number {
    if (this.size === 0) return -1;
    const mask = this.mask;
    const t = this.t;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      const at = i * 3;
      if (t[at + 2] === EMPTY) return -1;
      if (t[at] === lo && t[at + 1] === hi) return i;
    }
  }

  has(lo: number, hi: number): boolean {
    return this.find(lo, hi) >= 0;
  }

  tagAt(slot: number): number {
    return this.t[slot * 3 + 2]!;
  }

  setTag(slot: number, tag: number): void {
    this.t[slot * 3 + 2] = tag;
  }

  /**
   * Add a key with `tag` (not 0) unless present. Returns the slot it was put
   * in, -1 when it was already there, -2 when the set could not grow (ENOMEM).
   */
  add(lo: number, hi: number, tag: number): number {
    if ((this.size + 1) * 4 > this.slots * 3) {
      // Refused growth is retried once every RETRY_GROWTH adds, not on each (a refusal costs an exception).
      if (this.backoff > 0) {
        this.backoff--;
        if (this.find(lo, hi) >= 0) return -1;
        return this.refuse(lo, hi);
      }
      if (!this.grow(lo, hi)) {
        this.backoff = RETRY_GROWTH;
        return this.find(lo, hi) >= 0 ? -1 : this.refuse(lo, hi);
      }
    }
    const mask = this.mask;
    const t = this.t;
    for (let i = mix(lo, hi) & mask; ; i = (i + 1) & mask) {
      const at = i * 3;
      if (t[at + 2] === EMPTY) {
        t[at] = lo;
        t[at + 1] = hi;
        t[at + 2] = tag;
        this.size++;
        const off = this.windowOffset(lo, hi);
        if (off >= 0) {
          const bit = 1 << (off & 31);
          if ((this.win[off >>> 5]! & bit) !== 0) this.shadowed--; // refused before, held now
          this.win[off >>> 5]! |= bit;
        }
        return i;
      }
      if (t[at] === lo && t[at + 1] === hi) {
        // Present but outside the window: the fold probed for it. Many of those mean the keys
        // moved past the window chosen at the last doubling; choose it again from them.
        if (this.windowOffset(lo, hi) < 0 && ++this.outside > Math.max(REWINDOW_MIN, this.size >> 2)) this.rewindow(lo, hi);
        return -1;
      }
    }
  }

  /** Bit of the key in the window, or -1 when the window does not cover it. */
  private windowOffset(lo: number, hi: number): number {
    const off = (lo - this.winLo) >>> 0;
    return hi === this.winHi && off < this.winSpan ? off : -1;
  }

  /** Keys found present outside the window since it was chosen. */
  private outside = 0;

  private rewindow(hintLo: number, hintHi: number): void {
    this.dropWindow();
    this.chooseWindow(hintLo, hintHi);
  }

  /**
   * A key the full table could not take: -2. Inside the window its bit is set
   * anyway (a shadow), so that the fold, which trusts the window, does not
   * probe the full table for it again on every record: a union at its cap
   * would otherwise pay a miss probe for each refused PC of every batch. Such
   * a key is counted lost once; the next doubling rebuilds the window from
   * the table and forgets the shadows. find() and has() never read the window.
   */
  private refuse(lo: number, hi: number): number {
    const off = this.windowOffset(lo, hi);
    if (off >= 0) {
      const bit = 1 << (off & 31);
      if ((this.win[off >>> 5]! & bit) === 0) {
        this.win[off >>> 5]! |= bit;
        this.shadowed++;
      }
    }
    return -2;
  }

  /** Window bits of refused keys (see refuse()). */
  shadowed = 0;

  /** Double the table (and choose the window again); false when the budget refuses the table. */
  private grow(hintLo: number, hintHi: number): boolean {
    const slots = Math.max(MIN_SLOTS, this.slots * 2);
    const bytes = slots * SLOT_BYTES;
    try {
      this.budget.charge(bytes, this.what);
    } catch {
      return false;
    }
    this.dropWindow();
    const old = this.t;
    const t = new Uint32Array(allocTable(slots * SLOT_BYTES), 0, slots * 3);
    const mask = slots - 1;
    for (let j = 0; j < old.length; j += 3) {
      const tag = old[j + 2]!;
      if (tag === EMPTY) continue;
      const lo = old[j]!, hi = old[j + 1]!;
      let i = mix(lo, hi) & mask;
      while (t[i * 3 + 2] !== EMPTY) i = (i + 1) & mask;
      t[i * 3] = lo;
      t[i * 3 + 1] = hi;
      t[i * 3 + 2] = tag;
    }
    this.budget.release(this.bytes - this.win.byteLength); // the window's bits stay, for chooseWindow to reuse
    freeTable(old.buffer);
    this.t = t;
    this.mask = mask;
    this.bytes = bytes + this.win.byteLength;
    this.chooseWindow(hintLo, hintHi);
    return true;
  }

  /**
   * A window over the keys of the hint's high half: the smallest aligned power
   * of two span holding all of them and at least twice their range (at most
   * MAX_SPAN; past it, the span of MAX_SPAN around the hint). None when the budget refuses its bits.
   */
  private chooseWindow(hintLo: number, hintHi: number): void {
    const t = this.t;
    let min = hintLo, max = hintLo;
    for (let j = 0; j < t.length; j += 3) {
      if (t[j + 2] === EMPTY || t[j + 1] !== hintHi) continue;
      const lo = t[j]!;
      if (lo < min) min = lo;
      if (lo > max) max = lo;
    }
    let span = MIN_SPAN;
    // Aligned: base + span never passes 2^32, and (lo - base) >>> 0 < span tests membership.
    // Twice the keys' range: room for the keys still to come before the next doubling.
    while (span < MAX_SPAN && (Math.floor(min / span) !== Math.floor(max / span) || span < 2 * (max - min + 1))) span *= 2;
    const base = Math.floor((Math.floor(min / span) === Math.floor(max / span) ? min : hintLo) / span) * span;
    let win = this.win;
    if (win.length * 32 >= span) win.fill(0);
    else {
      try {
        this.budget.charge(span / 8, this.what);
      } catch {
        this.freeWindow();
        return;
      }
      this.freeWindow();
      win = new Uint32Array(span / 32);
      this.bytes += span / 8;
    }
    for (let j = 0; j < t.length; j += 3) {
      if (t[j + 2] === EMPTY || t[j + 1] !== hintHi) continue;
      const off = (t[j]! - base) >>> 0;
      if (off < span) win[off >>> 5]! |= 1 << (off & 31);
    }
    this.win = win;
    this.shadowed = 0;
    this.outside = 0;
    this.winHi = hintHi;
    this.winLo = base;
    this.winSpan = span;
  }

  /** No window: every key takes the probe until the next chooseWindow(), which reuses its bits. */
  private dropWindow(): void {
    this.shadowed = 0;
    this.winHi = this.winLo = this.winSpan = 0;
  }

  private freeWindow(): void {
    this.dropWindow();
    this.budget.release(this.win.byteLength);
    this.bytes -= this.win.byteLength;
    this.win = NO_WINDOW;
  }

  /** Empty it and give its bytes back. */
  clear(): void {
    this.budget.release(this.bytes);
    this.bytes = 0;
    freeTable(this.t.buffer);
    this.t = new Uint32Array(0);
    this.mask = -1;
    this.size = 0;
    this.backoff = 0;
    this.shadowed = 0;
    this.win = NO_WINDOW;
    this.winHi = this.winLo = this.winSpan = 0;
  }

  /** The owner is going away. */
  release(): void {
    this.clear();
  }

  /** Keys in slot order (unsorted), as little-endian words (u32[2i] low half, u32[2i+1] high half). */
  words(): Uint32Array {
    const u = new Uint32Array(this.size * 2);
    let n = 0;
    const t = this.t;
    for (let j = 0; j < t.length; j += 3) {
      if (t[j + 2] === EMPTY) continue;
      u[n++] = t[j]!;
      u[n++] = t[j + 1]!;
    }
    return u;
  }

  /** The keys sorted ascending as unsigned 64-bit values, as little-endian words. */
  sorted(): Uint32Array {
    const u = this.words();
    new BigUint64Array(u.buffer).sort(); // numeric, in native code: no BigInt per key
    return u;
  }

  /** Broken rules of the table, for the invariant checker. */
  check(what: string, out: string[]): void {
    let n = 0;
    const mask = this.mask;
    const t = this.t;
    for (let i = 0; i * 3 < t.length; i++) {
      if (t[i * 3 + 2] === EMPTY) continue;
      n++;
      // Every key must be reachable from its home slot without crossing an empty one.
      for (let j = mix(t[i * 3]!, t[i * 3 + 1]!) & mask; j !== i; j = (j + 1) & mask) {
        if (t[j * 3 + 2] === EMPTY) {
          out.push(`${what}: key in slot ${i} is cut off from its home slot by an empty slot ${j}`);
          break;
        }
      }
    }
    if (n !== this.size) out.push(`${what}: size ${this.size} != occupied slots ${n}`);
    if (this.bytes !== (t.length / 3) * SLOT_BYTES + this.win.byteLength) out.push(`${what}: charged ${this.bytes} bytes for ${t.length / 3} slots and ${this.win.byteLength} of window bits`);
    if (this.winSpan > this.win.length * 32) out.push(`${what}: a window of ${this.winSpan} over ${this.win.length * 32} bits`);
    // The window's bits are exactly the keys in its span, and the refused ones.
    let inWindow = 0;
    for (let i = 0; i * 3 < t.length; i++) {
      if (t[i * 3 + 2] === EMPTY) continue;
      const off = this.windowOffset(t[i * 3]!, t[i * 3 + 1]!);
      if (off < 0) continue;
      inWindow++;
      if ((this.win[off >>> 5]! & (1 << (off & 31))) === 0) out.push(`${what}: key in slot ${i} is in the window but its bit is clear`);
    }
    let bits = 0;
    for (let i = 0; i < this.win.length; i++) for (let x = this.win[i]!; x !== 0; x &= x - 1) bits++;
    if (bits !== inWindow + this.shadowed) out.push(`${what}: ${bits} window bits set for ${inWindow} keys in the window and ${this.shadowed} refused`);
  }
}

/** What foldRecords did: keys added to each set, keys the budget refused. */
export interface Folded {
  pcs: number;
  signals: number;
  refused: number;
  /** The journal could not take a key. */
  journalRefused: boolean;
}

/**
 * The fold of every gate (cover/union.ts): add the PCs of `n` records to
 * `pcs` with `tag` (record r's PC at u[w + r*step], low half, and the next
 * word, high half) and, when `signals` is given (PC mode), each record's
 * syzkaller edge signal (low half xored by edges[previous low half & 0xfff],
 * the first record's previous being `prev`) with tag 1. Keys newly added go
 * to the journal sets too, when given. One pass over the trace; a key already
 * present in a set's window costs one bit test, anything else goes through
 * add().
 */
export function foldRecords(
  u: Uint32Array, w: number, step: number, n: number, tag: number,
  pcs: PcSet, signals: PcSet | null, edges: Uint16Array, prev: number,
  jpcs: PcSet | null, jsignals: PcSet | null,
): Folded {
  const out: Folded = { pcs: 0, signals: 0, refused: 0, journalRefused: false };
  // As int32: kernel PCs (0xffffffff81...) have both halves past 2^31, which as uint32 would be
  // doubles in V8's optimized code and cost twice as much.
  const v = new Int32Array(u.buffer, u.byteOffset, u.length);
  const first = prev | 0;
  for (let r = 0; r < n;) {
    // The fast loop runs until a record that either window does not answer, which is then added here.
    r = signals === null ? scanPcs(v, w, step, r, n, pcs) : scanBoth(v, w, step, r, n, pcs, signals, edges, r === 0 ? first : v[w + (r - 1) * step]!);
    if (r >= n) break;
    const at = w + r * step;
    const lo = v[at]! >>> 0;
    const hi = v[at + 1]! >>> 0;
    const got = pcs.add(lo, hi, tag);
    if (got >= 0) {
      out.pcs++;
      if (jpcs !== null && jpcs.add(lo, hi, 1) === -2) out.journalRefused = true;
    } else if (got === -2) out.refused++;
    if (signals !== null) {
      const before = r === 0 ? first : v[at - step]!;
      const slo = (v[at]! ^ edges[before & 0xfff]!) >>> 0;
      const sgot = signals.add(slo, hi, 1);
      if (sgot >= 0) {
        out.signals++;
        if (jsignals !== null && jsignals.add(slo, hi, 1) === -2) out.journalRefused = true;
      } else if (sgot === -2) out.refused++;
    }
    r++;
  }
  return out;
}

/**
 * The first record in [r, n) whose PC the window of `pcs` does not show as
 * present (n when there is none). off = lo - base as int32 is in [0, span)
 * exactly when the unsigned difference is (span < 2^31).
 */
function scanPcs(v: Int32Array, w: number, step: number, r: number, n: number, pcs: PcSet): number {
  const win = pcs.win, base = pcs.winLo | 0, whi = pcs.winHi | 0, span = pcs.winSpan;
  for (let at = w + r * step; r < n; r++, at += step) {
    const off = (v[at]! - base) | 0;
    if (v[at + 1]! !== whi || off < 0 || off >= span || (win[off >>> 5]! & (1 << (off & 31))) === 0) return r;
  }
  return n;
}

/** As scanPcs, for a PC and its edge signal (`prev`: the low half before record r). */
function scanBoth(v: Int32Array, w: number, step: number, r: number, n: number, pcs: PcSet, signals: PcSet, edges: Uint16Array, prev: number): number {
  const pw = pcs.win, pb = pcs.winLo | 0, ph = pcs.winHi | 0, ps = pcs.winSpan;
  const sw = signals.win, sb = signals.winLo | 0, sh = signals.winHi | 0, ss = signals.winSpan;
  for (let at = w + r * step; r < n; r++, at += step) {
    const lo = v[at]!;
    const hi = v[at + 1]!;
    let off = (lo - pb) | 0;
    if (hi !== ph || off < 0 || off >= ps || (pw[off >>> 5]! & (1 << (off & 31))) === 0) return r;
    off = ((lo ^ edges[prev & 0xfff]!) - sb) | 0;
    if (hi !== sh || off < 0 || off >= ss || (sw[off >>> 5]! & (1 << (off & 31))) === 0) return r;
    prev = lo;
  }
  return n;
}
