/**
 * Event input for `kcovd events`: a file or stdin holding packed binary
 * records, a JSON events object, or text lines (one 0x PC a line; for CMP
 * `type arg1 arg2 pc`, the format `kcovd cover` prints). Binary and text are
 * streamed in batches of packed little-endian words; JSON goes as one body.
 */
import { parseU64 } from '../wire/u64.js';

export type InputFormat = 'binary' | 'json' | 'text';

/** Guess the format from the first bytes: `{`/`[` is JSON, hex or decimal digits on printable lines is text. */
export function sniff(head: Uint8Array): InputFormat {
  let i = 0;
  while (i < head.length && (head[i] === 0x20 || head[i] === 0x09 || head[i] === 0x0a || head[i] === 0x0d)) i++;
  if (i === head.length) return 'text';
  if (head[i] === 0x7b || head[i] === 0x5b) return 'json';
  const n = Math.min(head.length, 512);
  for (let j = 0; j < n; j++) {
    const c = head[j]!;
    if (c !== 0x0a && c !== 0x0d && c !== 0x09 && (c < 0x20 || c > 0x7e)) return 'binary';
  }
  const first = Buffer.from(head.subarray(i, Math.min(head.length, i + 40))).toString('latin1');
  return /^(0[xX][0-9a-fA-F]|[0-9]|#)/.test(first) ? 'text' : 'binary';
}

/** Cuts a byte stream into bodies of whole records. */
export class BinaryBatcher {
  private buf: Uint8Array;
  private n = 0;
  constructor(readonly batchBytes: number) {
    this.buf = new Uint8Array(batchBytes);
  }

  /** Bodies that are full after adding `chunk`. */
  *push(chunk: Uint8Array): Generator<Uint8Array> {
    let at = 0;
    while (at < chunk.length) {
      const take = Math.min(chunk.length - at, this.batchBytes - this.n);
      this.buf.set(chunk.subarray(at, at + take), this.n);
      this.n += take;
      at += take;
      if (this.n === this.batchBytes) {
        yield this.buf.slice();
        this.n = 0;
      }
    }
  }

  /** What is left (may be a partial record: the server then rejects it). */
  rest(): Uint8Array | null {
    if (this.n === 0) return null;
    const out = this.buf.slice(0, this.n);
    this.n = 0;
    return out;
  }
}

/** Parses text lines into packed words: one value a line (pc) or four (cmp). */
export class TextBatcher {
  private words: Uint32Array;
  private n = 0;
  private carry = '';
  private line = 0;
  readonly perRecord: number;

  constructor(readonly kind: 'pc' | 'cmp', readonly batchRecords: number) {
    this.perRecord = kind === 'pc' ? 1 : 4;
    this.words = new Uint32Array(batchRecords * this.perRecord * 2);
  }

  *push(chunk: Uint8Array | string): Generator<Uint8Array> {
    const text = this.carry + (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('latin1'));
    const lines = text.split('\n');
    this.carry = lines.pop() ?? '';
    for (const l of lines) yield* this.parse(l);
  }

  *end(): Generator<Uint8Array> {
    if (this.carry !== '') yield* this.parse(this.carry);
    this.carry = '';
    if (this.n > 0) yield this.take();
  }

  private *parse(raw: string): Generator<Uint8Array> {
    this.line++;
    const s = raw.trim();
    if (s === '' || s.startsWith('#')) return;
    const parts = s.split(/[\s,]+/);
    if (parts.length !== this.perRecord) {
      throw new Error(`line ${this.line}: expected ${this.perRecord === 1 ? 'one PC' : 'four values (type arg1 arg2 pc)'}, got "${s.slice(0, 80)}"`);
    }
    const base = this.n * this.perRecord * 2;
    for (let i = 0; i < parts.length; i++) {
      if (!parseU64(parts[i], this.words, base + i * 2)) throw new Error(`line ${this.line}: "${parts[i]}" is not a 64-bit value`);
    }
    if (++this.n === this.batchRecords) yield this.take();
  }

  private take(): Uint8Array {
    const out = new Uint8Array(this.words.buffer, 0, this.n * this.perRecord * 8).slice();
    this.n = 0;
    return out;
  }
}
