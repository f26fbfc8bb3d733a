/**
 * Buffers for binary snapshots, reused once a response has been handed to the
 * OS. A fresh multi-megabyte buffer per read costs more in page faults than the
 * copy itself; a pooled one is already mapped. Not charged to KCOV_MEMORY_LIMIT:
 * like any in-flight body, it is bounded by `maxBytes` here.
 *
 * The copy of a whole area is shared by every read of that area until the area
 * is written again (its write stamp moves, see Area.stamp): a poller reading an
 * unchanged area costs no copy. Kept copies count against `maxBytes` too.
 */
import type { AreaStamp } from '../../engine/area.js';

/** One copy of a whole area, as of `writes`. */
export interface SharedCopy {
  readonly buf: Buffer;
  readonly writes: number;
  /** Replies being written from it. */
  users: number;
  /** Still the area's current copy (in `byArea`). */
  kept: boolean;
  /** False once a reply from it was cut off: a socket may still refer to it, never write into it again. */
  reusable: boolean;
}

export class SnapshotPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooled = 0;
  /** The last whole copy of each area, by stamp id, oldest first. */
  private readonly byArea = new Map<number, SharedCopy>();
  private kept = 0;

  constructor(
    /** Smaller snapshots are cheap to allocate and are not pooled. */
    private readonly minBytes = 64 * 1024,
    /** Bytes kept idle in the pool at most. */
    private readonly maxBytes = 32 * 1024 * 1024,
  ) {}

  /** A copy of `src` at this instant. */
  copy(src: Uint8Array): Buffer {
    const list = src.length >= this.minBytes ? this.free.get(src.length) : undefined;
    const buf = list?.pop();
    if (buf !== undefined) {
      this.pooled -= buf.length;
      buf.set(src);
      return buf;
    }
    // allocUnsafeSlow: no zero fill and no pool slice for bytes that are overwritten at once.
    const out = Buffer.allocUnsafeSlow(src.length);
    out.set(src);
    return out;
  }

  /** The whole area `src` (whose stamp is `stamp`) at this instant: the kept copy when nothing wrote it since. */
  whole(stamp: AreaStamp, src: Uint8Array): SharedCopy {
    const had = this.byArea.get(stamp.id);
    if (had !== undefined) {
      if (had.writes === stamp.writes && had.buf.length === src.length) {
        had.users++;
        return had;
      }
      this.unkeep(stamp.id, had);
    }
    const c: SharedCopy = { buf: this.copy(src), writes: stamp.writes, users: 1, kept: false, reusable: true };
    if (src.length >= this.minBytes) {
      // Room among the idle bytes: older kept copies nobody is reading go first.
      for (const [id, old] of this.byArea) {
        if (this.pooled + this.kept + src.length <= this.maxBytes) break;
        if (old.users === 0) this.unkeep(id, old);
      }
      if (this.pooled + this.kept + src.length <= this.maxBytes) {
        c.kept = true;
        this.kept += src.length;
        this.byArea.set(stamp.id, c);
      }
    }
    return c;
  }

  /** A reply from `c` is over; `finished`: it was written out whole. */
  done(c: SharedCopy, finished: boolean): void {
    if (!finished) c.reusable = false;
    c.users--;
    if (c.users === 0 && !c.kept && c.reusable) this.release(c.buf);
  }

  private unkeep(id: number, c: SharedCopy): void {
    this.byArea.delete(id);
    c.kept = false;
    this.kept -= c.buf.length;
    if (c.users === 0 && c.reusable) this.release(c.buf);
  }

  /** Give a buffer back once nothing (no socket write) refers to it any more. */
  release(buf: Buffer): void {
    if (buf.length < this.minBytes || this.pooled + this.kept + buf.length > this.maxBytes) return;
    let list = this.free.get(buf.length);
    if (list === undefined) {
      list = [];
      this.free.set(buf.length, list);
    }
    list.push(buf);
    this.pooled += buf.length;
  }

  get idleBytes(): number {
    return this.pooled;
  }

  /** Bytes of whole-area copies kept for the next read. */
  get keptBytes(): number {
    return this.kept;
  }
}
