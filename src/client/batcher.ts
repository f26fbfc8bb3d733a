/**
 * Event batcher for instrumented programs written in JavaScript: records go
 * into two packed buffers (PC and CMP) and leave as binary bodies
 * (`?kind=pc` / `?kind=cmp`) when a buffer fills or the interval passes.
 * Batches of one batcher are sent one after another, in order, over the
 * client's kept-alive connections. No BigInt and no per-record objects:
 * values are parsed straight into the buffers.
 */
import { CMP_CONST, cmpSizeBits, fnv1a64 } from '../wire/records.js';
import { parseU64 } from '../wire/u64.js';
import type { EventResult, RecordKind } from './client.js';

export interface BatcherOptions {
  /** Records a buffer holds before it is sent (default 8192). */
  maxRecords?: number;
  /** Longest a record waits before its batch is sent, in ms (default 100; 0: only by size and flush()). */
  intervalMs?: number;
  /** Called with each failure of a batch sent in the background; the next flush() or close() rejects with it too. */
  onError?: (err: unknown) => void;
  /** Called with the server's reply to each batch. */
  onReply?: (reply: EventResult, kind: RecordKind) => void;
}

export type Send = (body: Uint8Array, kind: RecordKind) => Promise<EventResult>;

/** A 64-bit value the batcher accepts: a safe integer, 0x hex or decimal string. */
export type U64Input = number | string;

export interface BatcherTotals {
  /** Records handed to the server. */
  sent: number;
  /** Requests made. */
  requests: number;
  accepted: number;
  dropped: number;
  ignored: number;
}

const SITE_CACHE_MAX = 4096;

export class EventBatcher {
  readonly maxRecords: number;
  readonly intervalMs: number;
  readonly totals: BatcherTotals = { sent: 0, requests: 0, accepted: 0, dropped: 0, ignored: 0 };
  private readonly send: Send;
  private readonly opts: BatcherOptions;
  private pcBuf: Uint32Array;
  private pcN = 0;
  private cmpBuf: Uint32Array;
  private cmpN = 0;
  private timer: NodeJS.Timeout | null = null;
  private tail: Promise<void> = Promise.resolve();
  private error: unknown = null;
  private closed = false;
  /** Site id halves by site string: edge() in a loop hashes each site once. */
  private readonly sites = new Map<string, number>();
  private readonly siteIds = new Uint32Array(SITE_CACHE_MAX * 2);

  constructor(send: Send, opts: BatcherOptions = {}) {
    this.send = send;
    this.opts = opts;
    this.maxRecords = opts.maxRecords ?? 8192;
    this.intervalMs = opts.intervalMs ?? 100;
    if (!Number.isInteger(this.maxRecords) || this.maxRecords < 1) throw new RangeError('maxRecords must be a positive integer');
    this.pcBuf = new Uint32Array(this.maxRecords * 2);
    this.cmpBuf = new Uint32Array(this.maxRecords * 8);
  }

  /** Records waiting in the buffers. */
  get buffered(): number {
    return this.pcN + this.cmpN;
  }

  /** A PC (__sanitizer_cov_trace_pc). */
  pc(value: U64Input): this {
    this.writable();
    if (!parseU64(value, this.pcBuf, this.pcN * 2)) throw new TypeError(`pc: ${JSON.stringify(value)} is not a 64-bit unsigned value`);
    return this.pcAdded();
  }

  /** A PC given as its two 32-bit halves. */
  pcHalves(lo: number, hi: number): this {
    this.writable();
    this.pcBuf[this.pcN * 2] = lo;
    this.pcBuf[this.pcN * 2 + 1] = hi;
    return this.pcAdded();
  }

  /**
   * A hand-placed coverage point: the PC FNV-1a-64(site), the same id the
   * server gives a JSON `sites` entry ("net/ipv4/tcp.c:123").
   */
  edge(site: string): this {
    this.writable();
    const at = this.pcN * 2;
    const slot = this.sites.get(site);
    if (slot !== undefined) {
      this.pcBuf[at] = this.siteIds[slot * 2]!;
      this.pcBuf[at + 1] = this.siteIds[slot * 2 + 1]!;
    } else {
      fnv1a64(site, this.pcBuf, at);
      if (this.sites.size < SITE_CACHE_MAX) {
        const s = this.sites.size;
        this.siteIds[s * 2] = this.pcBuf[at]!;
        this.siteIds[s * 2 + 1] = this.pcBuf[at + 1]!;
        this.sites.set(site, s);
      }
    }
    return this.pcAdded();
  }

  /** A comparison (__sanitizer_cov_trace_cmpN / _const_cmpN): size in bytes. */
  cmp(size: 1 | 2 | 4 | 8, arg1: U64Input, arg2: U64Input, pc: U64Input, isConst = false): this {
    if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new TypeError(`cmp: size ${String(size)} is not 1, 2, 4 or 8`);
    return this.cmpType(cmpSizeBits(size) | (isConst ? CMP_CONST : 0), arg1, arg2, pc);
  }

  /** A comparison with its raw type word: KCOV_CMP_SIZE(n) | KCOV_CMP_CONST. */
  cmpType(type: number, arg1: U64Input, arg2: U64Input, pc: U64Input): this {
    this.writable();
    const at = this.cmpN * 8;
    const b = this.cmpBuf;
    b[at] = type;
    b[at + 1] = 0;
    if (!parseU64(arg1, b, at + 2) || !parseU64(arg2, b, at + 4) || !parseU64(pc, b, at + 6)) {
      throw new TypeError('cmp: arguments must be 64-bit unsigned values');
    }
    if (++this.cmpN === this.maxRecords) this.enqueue('cmp');
    else this.arm();
    return this;
  }

  /** __sanitizer_cov_trace_switch: one const comparison per case (arg1 = case, arg2 = val). */
  switch(val: U64Input, bits: 8 | 16 | 32 | 64, cases: readonly U64Input[], pc: U64Input): this {
    for (const c of cases) this.cmp((bits / 8) as 1 | 2 | 4 | 8, c, val, pc, true);
    return this;
  }

  /** Send what is buffered; resolves when every batch so far has been answered. */
  async flush(): Promise<void> {
    this.enqueue('pc');
    this.enqueue('cmp');
    await this.tail;
    this.rethrow();
  }

  /** Flush and stop; further records throw. */
  async close(): Promise<void> {
    if (this.closed) return this.tail.then(() => this.rethrow());
    await this.flush().finally(() => {
      this.closed = true;
      this.disarm();
    });
  }

  private writable(): void {
    if (this.closed) throw new Error('batcher is closed');
  }

  private pcAdded(): this {
    if (++this.pcN === this.maxRecords) this.enqueue('pc');
    else this.arm();
    return this;
  }

  private rethrow(): void {
    if (this.error !== null) {
      const e = this.error;
      this.error = null;
      throw e;
    }
  }

  private arm(): void {
    if (this.timer !== null || this.intervalMs <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.enqueue('pc');
      this.enqueue('cmp');
    }, this.intervalMs);
    this.timer.unref();
  }

  private disarm(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /** Move a buffer's records into a body and queue it behind the batches before it. */
  private enqueue(kind: RecordKind): void {
    const n = kind === 'pc' ? this.pcN : this.cmpN;
    if (n === 0) return;
    const words = kind === 'pc' ? 2 : 8;
    const src = kind === 'pc' ? this.pcBuf : this.cmpBuf;
    const body = new Uint8Array(src.buffer, 0, n * words * 4).slice();
    if (kind === 'pc') this.pcN = 0;
    else this.cmpN = 0;
    if (this.pcN === 0 && this.cmpN === 0) this.disarm();
    this.tail = this.tail.then(async () => {
      try {
        const r = await this.send(body, kind);
        this.totals.requests++;
        this.totals.sent += n;
        this.totals.accepted += r.accepted;
        this.totals.dropped += r.dropped;
        this.totals.ignored += r.ignored;
        this.opts.onReply?.(r, kind);
      } catch (err) {
        if (this.error === null) this.error = err;
        this.opts.onError?.(err);
      }
    });
  }
}
