/**
 * In-process measurements: the engine without HTTP against TypedArray.set of
 * the same bytes, and the JSON/text snapshot encoders against
 * Buffer.toString('hex') of the same area. Medians over rounds.
 */
import { childResult, median, type MicroRow } from './cases.js';
import { Engine } from '../src/engine/engine.js';
import type { Kernel } from '../src/engine/kernel.js';
import { coverageJsonBuffer, coverageTextBuffer } from '../src/http/codecs/coverage.js';
import { fileURLToPath } from 'node:url';

export type { MicroRow };


/** Seconds per call of f, timed over enough calls to last about `ms`. */
function timePerCall(f: () => void, ms: number): number {
  let n = 1;
  for (;;) {
    const t = performance.now();
    for (let i = 0; i < n; i++) f();
    const dt = performance.now() - t;
    if (dt >= ms) return dt / 1000 / n;
    n = dt < 1 ? n * 16 : Math.ceil(n * (ms / dt) * 1.1);
  }
}

function tracedKernel(words: number, cover = true): { kernel: Kernel; fd: number } {
  const engine = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 2 * 1024 ** 3, cover });
  const kernel = engine.kernel('default');
  const fd = kernel.open(1).fd;
  kernel.ioctl(fd, 'KCOV_INIT_TRACE', 1, words);
  kernel.ioctl(fd, 'KCOV_ENABLE', 1, 'pc');
  return { kernel, fd };
}

/** A body as a socket delivers it: slices of one larger buffer. */
function chunked(bytes: number, chunk: number): Buffer[] {
  const all = Buffer.alloc(bytes + 8);
  for (let i = 0; i < bytes / 8; i++) all.writeUInt32LE(0x81000000 + i * 4, 8 + i * 8), all.writeUInt32LE(0xffffffff, 12 + i * 8);
  const out: Buffer[] = [];
  for (let at = 8; at < bytes + 8; at += chunk) out.push(all.subarray(at, Math.min(at + chunk, bytes + 8)));
  return out;
}

/**
 * With the cover union (the default) every batch is folded into it too; without it, the
 * engine alone. Each setting is measured in a process of its own (engineBenchIn), as a
 * service runs one: code that saw both would be slower than either.
 */
export function engineBench(rounds: number, cover: boolean): MicroRow[] {
  const rows: MicroRow[] = [];
  const AREA = 4 * 1024 * 1024;
  for (const [bytes, chunk] of [[64 * 1024, 16 * 1024], [1600, 1600]] as const) {
    const { kernel, fd } = tracedKernel(AREA, cover);
    const d = kernel.descriptor(fd);
    const chunks = chunked(bytes, chunk);
    const perArea = Math.floor((AREA - 1) / (bytes / 8));
    let n = 0;
    const engineCall = () => {
      if (++n === perArea) {
        kernel.setCount(d, 0);
        n = 0;
      }
      kernel.eventsBinary(1, 'pc', chunks, bytes);
    };
    const dst = new Uint8Array(AREA * 8);
    let at = 8;
    const setCall = () => {
      if (at + bytes > dst.length) at = 8;
      for (const c of chunks) {
        dst.set(c, at);
        at += c.length;
      }
    };
    const ratios: number[] = [];
    const te: number[] = [];
    const tb: number[] = [];
    timePerCall(engineCall, 50);
    timePerCall(setCall, 50);
    for (let r = 0; r < rounds; r++) {
      const b = timePerCall(setCall, 150);
      const e = timePerCall(engineCall, 150);
      te.push(e);
      tb.push(b);
      ratios.push(b / e);
    }
    const gbs = (s: number) => `${(bytes / s / 1e9).toFixed(2)} GB/s`;
    rows.push({
      name: `engine alone, ${bytes >= 4096 ? `${bytes / 1024} KiB` : `${bytes / 8}-PC`} batches (no HTTP)${cover ? ', union fold included' : ', KCOV_COVER=off'}`,
      value: `${(median(te) * 1e6).toFixed(2)} µs/batch, ${gbs(median(te))}`,
      baseline: 'TypedArray.set of the same chunks',
      baselineValue: `${(median(tb) * 1e6).toFixed(2)} µs, ${gbs(median(tb))}`,
      ratio: median(ratios),
      min: Math.min(...ratios),
      max: Math.max(...ratios),
      target: cover ? '≥ 0.8 ' + (median(ratios) >= 0.8 ? '✓' : '✗') : 'information',
    });
  }
  return rows;
}

export function snapshotCodecBench(rounds: number): MicroRow[] {
  const WORDS = 512 * 1024 + 1;
  const { kernel, fd } = tracedKernel(WORDS);
  const chunks = chunked((WORDS - 1) * 8, 64 * 1024);
  kernel.eventsBinary(1, 'pc', chunks, (WORDS - 1) * 8);
  const m = kernel.mapping(kernel.descriptor(fd));
  const hex = () => void Buffer.from(m.area.bytes.buffer, m.area.bytes.byteOffset, m.area.bytes.byteLength).toString('hex');
  const rows: MicroRow[] = [];
  for (const [name, f] of [['JSON', () => void coverageJsonBuffer(m.trace, 'pc')], ['text', () => void coverageTextBuffer(m.trace, 'pc')]] as const) {
    const ratios: number[] = [];
    const tk: number[] = [];
    const tb: number[] = [];
    f();
    hex();
    for (let r = 0; r < rounds; r++) {
      const b = timePerCall(hex, 100);
      const k = timePerCall(f, 100);
      tb.push(b);
      tk.push(k);
      ratios.push(b / k);
    }
    rows.push({
      name: `${name} snapshot of 512Ki PCs (encode only)`,
      value: `${(median(tk) * 1e3).toFixed(1)} ms`,
      baseline: "Buffer.toString('hex') of the area",
      baselineValue: `${(median(tb) * 1e3).toFixed(1)} ms`,
      ratio: median(ratios),
      min: Math.min(...ratios),
      max: Math.max(...ratios),
      target: 'report',
    });
  }
  return rows;
}

/** engineBench in a child process of its own. */
export function engineBenchIn(rounds: number, cover: boolean): Promise<MicroRow[]> {
  return childResult<MicroRow[]>(fileURLToPath(import.meta.url), ['engine', String(rounds), cover ? 'on' : 'off']);
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'engine') {
  process.send!(engineBench(Number(process.argv[3]), process.argv[4] === 'on'), () => process.exit(0));
}
