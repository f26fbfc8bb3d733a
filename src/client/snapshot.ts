/**
 * A binary coverage area as userspace maps it, read without BigInt: word 0 is
 * the count, records follow (PC stride 1 word, CMP stride 4 words). Words are
 * exposed as (lo, hi) uint32 halves and as hex strings on demand.
 */
import { CMP_STRIDE, PC_STRIDE, WORD, capacityOf, cmpSizeOf, type TraceMode } from '../wire/records.js';
import { formatU64, u64Value } from '../wire/u64.js';

export interface CmpView {
  type: number;
  /** Operand size in bytes, from the type (KCOV_CMP_SIZE). */
  size: number;
  const: boolean;
  arg1: string;
  arg2: string;
  pc: string;
}

export class CoverageSnapshot {
  /** The area's bytes (a copy the snapshot owns, 8-byte aligned). */
  readonly bytes: Uint8Array;
  /** Halves of every word: u32[2k] = low, u32[2k+1] = high half of word k. */
  readonly u32: Uint32Array;
  readonly view: DataView;
  /** Area size in words, count word included. */
  readonly words: number;

  constructor(bytes: Uint8Array) {
    if (bytes.byteLength % WORD !== 0) throw new RangeError(`area of ${bytes.byteLength} bytes is not whole words`);
    // Own an aligned copy: the response body may sit at any offset of a pooled buffer.
    const own = new Uint8Array(bytes.byteLength);
    own.set(bytes);
    this.bytes = own;
    this.u32 = new Uint32Array(own.buffer);
    this.view = new DataView(own.buffer);
    this.words = own.byteLength / WORD;
  }

  /** The count word as stored (a writer may have set it past capacity). */
  get count(): number {
    return this.words === 0 ? 0 : u64Value(this.u32[0]!, this.u32[1]!);
  }

  /** Records of `stride` words that fit: floor((words - 1) / stride). */
  capacity(stride: 1 | 4 = PC_STRIDE): number {
    return capacityOf(this.words, stride);
  }

  /** Records visible in PC mode: min(count, capacity). */
  get pcCount(): number {
    return Math.min(this.count, this.capacity(PC_STRIDE));
  }

  /** Records visible in CMP mode. */
  get cmpCount(): number {
    return Math.min(this.count, this.capacity(CMP_STRIDE));
  }

  /** The visible PCs as (lo, hi) pairs: records[2i] low half, records[2i+1] high half. */
  get records(): Uint32Array {
    return this.u32.subarray(2, 2 + 2 * this.pcCount);
  }

  /** Low half of word k. */
  lo(word: number): number {
    return this.u32[word * 2]!;
  }

  /** High half of word k. */
  hi(word: number): number {
    return this.u32[word * 2 + 1]!;
  }

  /** Word k as lowercase hex without padding. */
  word(k: number): string {
    return formatU64(this.u32[k * 2]!, this.u32[k * 2 + 1]!);
  }

  /** PC record i as hex ("0xffffffff81000010"). */
  pc(i: number): string {
    return this.word(1 + i);
  }

  /** Every visible PC as hex. */
  pcs(): string[] {
    const n = this.pcCount;
    const out = new Array<string>(n);
    for (let i = 0; i < n; i++) out[i] = this.pc(i);
    return out;
  }

  /** CMP record i: type, arg1, arg2, pc. */
  cmp(i: number): CmpView {
    const w = 1 + i * CMP_STRIDE;
    const type = this.u32[w * 2]!;
    return { type, size: cmpSizeOf(type), const: (type & 1) === 1, arg1: this.word(w + 1), arg2: this.word(w + 2), pc: this.word(w + 3) };
  }

  cmps(): CmpView[] {
    const n = this.cmpCount;
    const out = new Array<CmpView>(n);
    for (let i = 0; i < n; i++) out[i] = this.cmp(i);
    return out;
  }

  /** syz-manager /rawcover text: one 0x PC a line (CMP: `type arg1 arg2 pc`). */
  text(mode: TraceMode = 'pc'): string {
    let s = '';
    if (mode === 'pc') {
      const n = this.pcCount;
      for (let i = 0; i < n; i++) s += this.pc(i) + '\n';
      return s;
    }
    const n = this.cmpCount;
    for (let i = 0; i < n; i++) {
      const w = 1 + i * CMP_STRIDE;
      s += `${this.word(w)} ${this.word(w + 1)} ${this.word(w + 2)} ${this.word(w + 3)}\n`;
    }
    return s;
  }
}
