/** Encoders of a mapped area: JSON and rawcover text. Binary is the area's own bytes. */
import { CMP_STRIDE, PC_STRIDE, type Area, type TraceMode } from '../../engine/area.js';
import { formatU64 } from '../../engine/u64.js';

function pcList(trace: Area): string[] {
  const n = trace.visible(PC_STRIDE);
  const u = trace.u32;
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) out[i] = formatU64(u[(i + 1) * 2]!, u[(i + 1) * 2 + 1]!);
  return out;
}

export function coverageJson(trace: Area, mode: TraceMode): string {
  const head = `{"mode":"${mode}","count":${trace.count},"words":${trace.words},`;
  if (mode === 'pc') {
    const pcs = pcList(trace);
    return head + '"pcs":[' + (pcs.length === 0 ? '' : '"' + pcs.join('","') + '"') + ']}';
  }
  const n = trace.visible(CMP_STRIDE);
  const u = trace.u32;
  const parts = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const w = (1 + i * CMP_STRIDE) * 2;
    const type = u[w]!;
    parts[i] =
      `{"type":${type},"size":${1 << ((type >>> 1) & 3)},"const":${(type & 1) === 1},` +
      `"arg1":"${formatU64(u[w + 2]!, u[w + 3]!)}","arg2":"${formatU64(u[w + 4]!, u[w + 5]!)}",` +
      `"pc":"${formatU64(u[w + 6]!, u[w + 7]!)}"}`;
  }
  return head + '"cmps":[' + parts.join(',') + ']}';
}

/** syz-manager /rawcover: one 0x PC a line; CMP mode: `type arg1 arg2 pc`. */
export function coverageText(trace: Area, mode: TraceMode): string {
  if (mode === 'pc') {
    const pcs = pcList(trace);
    return pcs.length === 0 ? '' : pcs.join('\n') + '\n';
  }
  const n = trace.visible(CMP_STRIDE);
  const u = trace.u32;
  let s = '';
  for (let i = 0; i < n; i++) {
    const w = (1 + i * CMP_STRIDE) * 2;
    s += `${formatU64(u[w]!, u[w + 1]!)} ${formatU64(u[w + 2]!, u[w + 3]!)} ${formatU64(u[w + 4]!, u[w + 5]!)} ${formatU64(u[w + 6]!, u[w + 7]!)}\n`;
  }
  return s;
}

export type CoverageFormat = 'binary' | 'json' | 'text';

/** Pick a format from an Accept header (q-values honoured); JSON when nothing matches. */
export function negotiate(accept: string | undefined): CoverageFormat {
  if (accept === undefined || accept === '') return 'json';
  let best: CoverageFormat | null = null;
  let bestQ = -1;
  for (const part of accept.split(',')) {
    const [rawType, ...params] = part.trim().split(';');
    const type = (rawType ?? '').trim().toLowerCase();
    let q = 1;
    for (const p of params) {
      const m = /^\s*q\s*=\s*([0-9.]+)\s*$/.exec(p);
      if (m) q = Number(m[1]);
    }
    const f: CoverageFormat | null =
      type === 'application/octet-stream' ? 'binary'
      : type === 'application/json' || type === 'application/*' || type === '*/*' ? 'json'
      : type === 'text/plain' || type === 'text/*' ? 'text'
      : null;
    if (f !== null && q > 0 && q > bestQ) {
      best = f;
      bestQ = q;
    }
  }
  return best ?? 'json';
}

/** A single `bytes=a-b`, `bytes=a-` or `bytes=-n` range; null to serve the whole body. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | 'unsatisfiable' {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null) return null; // multiple or odd ranges: RFC 9110 lets us ignore Range
  const [, a, b] = m;
  if (a === '' && b === '') return null;
  let start: number, end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) return null;
  }
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}
