/**
 * Buffers for binary snapshots, reused once a response has been handed to the
 * OS. A fresh multi-megabyte buffer per read costs more in page faults than the
 * copy itself; a pooled one is already mapped. Not charged to KCOV_MEMORY_LIMIT:
 * like any in-flight body, it is bounded by `maxBytes` here.
 */
export class SnapshotPool {
  private readonly free = new Map<number, Buffer[]>();
  private pooled = 0;

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

  /** Give a buffer back once nothing (no socket write) refers to it any more. */
  release(buf: Buffer): void {
    if (buf.length < this.minBytes || this.pooled + buf.length > this.maxBytes) return;
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
}
