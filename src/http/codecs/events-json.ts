/**
 * A JSON events body straight from its bytes to records: no JSON.parse, no
 * object per event, no array of numbers. The batches clients send (`pcs` of
 * numbers or U64 strings, `cmps`, `switches`, ASCII `sites`) become the same
 * Segments engine/events.ts decodeJsonEvents makes of the parsed body.
 *
 * Three answers:
 * - segments: the body is valid, and these are its records in key order;
 * - invalid: the body is surely invalid; `text` is the first bad element of
 *   list `key` (at `index`), for zod to name what is wrong with it. A 2 MiB
 *   body of `{}` elements is refused after a byte scan, not after building
 *   700,000 objects (171 ms of JSON.parse alone, and their GC).
 * - null: anything this scanner does not decide (escapes, fractions,
 *   exponents, signs, duplicate or unknown keys, non-ASCII sites, U64 strings
 *   the engine would refuse, malformed JSON): the caller parses the body as
 *   before, so every such answer stays JSON.parse's, zod's and the engine's.
 *
 * Not reentrant: one scan at a time (the event loop's).
 */
import type { Segment } from '../../engine/events.js';
import { CMP_CONST, cmpSizeBits, fnv1a64Bytes } from '../../wire/records.js';
import { setHalves, timesTenPlus, U64_MAX_DEC } from '../../wire/u64.js';

export type EventsScan =
  | { readonly kind: 'segments'; readonly segments: Segment[] }
  | { readonly kind: 'invalid'; readonly key: string; readonly index: number; readonly text: string }
  | null;

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** zod's `sites` element bound (schemas/events.ts). */
const SITE_MAX = 4096;

const OK = 1;
const BAD = 0;
const UNSURE = -1;

const Q = 0x22, COMMA = 0x2c, COLON = 0x3a, LBRACK = 0x5b, RBRACK = 0x5d, LBRACE = 0x7b, RBRACE = 0x7d, BSLASH = 0x5c;

let b: Uint8Array = new Uint8Array(0);
let i = 0;
let n = 0;

/** Words of one segment, grown by doubling. */
class Words {
  u32 = new Uint32Array(256);
  len = 0;
  room(k: number): Uint32Array {
    if (this.len + k > this.u32.length) {
      const next = new Uint32Array(Math.max(this.u32.length * 2, this.len + k));
      next.set(this.u32.subarray(0, this.len));
      this.u32 = next;
    }
    return this.u32;
  }
}

function ws(): void {
  while (i < n) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return;
    i++;
  }
}

const isDigit = (c: number | undefined): boolean => c !== undefined && c >= 0x30 && c <= 0x39;

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/** The kinds of JSON value a byte starts, for a value of the wrong type (surely invalid) versus garbage (unsure). */
function startsValue(c: number | undefined): boolean {
  return c === Q || c === LBRACE || c === LBRACK || c === 0x74 || c === 0x66 || c === 0x6e || c === 0x2d || isDigit(c);
}

/** A U64 (schemas/common.ts) at i into out[at], out[at+1]. */
function u64(out: Uint32Array, at: number): number {
  const c = b[i];
  if (isDigit(c)) {
    const start = i;
    if (c === 0x30 && isDigit(b[i + 1])) return UNSURE; // a leading zero: JSON.parse refuses it
    let v = 0;
    while (i < n && isDigit(b[i])) v = v * 10 + (b[i++]! - 0x30);
    const d = b[i];
    if (d === 0x2e || d === 0x65 || d === 0x45) return UNSURE; // 1.0 and 1e3 are integers to zod
    // 17 digits are past 2^53; 16 digits are exact up to it, and past it still compare larger.
    if (i - start > 16 || v > MAX_SAFE) return BAD;
    setHalves(out, at, v);
    return OK;
  }
  if (c !== Q) return startsValue(c) ? (c === 0x2d ? UNSURE : BAD) : UNSURE;
  const s = i + 1;
  let e = s;
  while (e < n && b[e] !== Q) {
    if (b[e] === BSLASH || b[e]! < 0x20) return UNSURE;
    e++;
  }
  if (e >= n) return UNSURE;
  i = e + 1;
  if (e - s >= 3 && b[s] === 0x30 && (b[s + 1]! | 0x20) === 0x78) {
    let h = s + 2;
    for (let k = h; k < e; k++) if (hexVal(b[k]!) < 0) return BAD;
    while (h < e - 1 && b[h] === 0x30) h++;
    if (e - h > 16) return UNSURE; // zod's regex takes it; the engine refuses it with its own message
    let lo = 0, hi = 0;
    const split = Math.max(h, e - 8);
    for (let k = h; k < split; k++) hi = hi * 16 + hexVal(b[k]!);
    for (let k = split; k < e; k++) lo = lo * 16 + hexVal(b[k]!);
    out[at] = lo;
    out[at + 1] = hi;
    return OK;
  }
  if (e === s) return BAD;
  for (let k = s; k < e; k++) if (!isDigit(b[k])) return BAD;
  let d = s;
  while (d < e - 1 && b[d] === 0x30) d++;
  if (e - d > 20 || (e - d === 20 && pastU64Max(d))) return UNSURE; // past 2^64 - 1: the engine's message
  out[at] = 0;
  out[at + 1] = 0;
  for (let k = d; k < e; k++) timesTenPlus(out, at, b[k]! - 0x30);
  return OK;
}

/** Are the 20 digits at d larger than 2^64 - 1? */
function pastU64Max(d: number): boolean {
  for (let k = 0; k < 20; k++) {
    const c = b[d + k]!, m = U64_MAX_DEC.charCodeAt(k);
    if (c !== m) return c > m;
  }
  return false;
}

/** A small non-negative JSON integer at i (a size), or -1 when it is not one; -2 unsure. */
function smallInt(): number {
  const c = b[i];
  if (!isDigit(c)) return startsValue(c) && c !== 0x2d ? -1 : -2;
  if (c === 0x30 && isDigit(b[i + 1])) return -2;
  let v = 0;
  while (i < n && isDigit(b[i])) {
    v = v * 10 + (b[i++]! - 0x30);
    if (v > 1000) return -1;
  }
  const d = b[i];
  if (d === 0x2e || d === 0x65 || d === 0x45) return -2;
  return v;
}

/** true, false, or: -1 another value, -2 garbage. */
function bool(): boolean | number {
  if (b[i] === 0x74 && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) {
    i += 4;
    return true;
  }
  if (b[i] === 0x66 && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) {
    i += 5;
    return false;
  }
  return startsValue(b[i]) ? -1 : -2;
}

/** A key without escapes, as a small bit (KEYS) or 0 for another key; -1 unsure. */
function key(names: readonly string[]): number {
  if (b[i] !== Q) return -1;
  const s = ++i;
  while (i < n && b[i] !== Q) {
    if (b[i] === BSLASH || b[i]! < 0x20) return -1;
    i++;
  }
  if (i >= n) return -1;
  const e = i++;
  for (let k = 0; k < names.length; k++) {
    const name = names[k]!;
    if (name.length !== e - s) continue;
    let same = true;
    for (let j = 0; j < name.length; j++) if (name.charCodeAt(j) !== b[s + j]) { same = false; break; }
    if (same) return 1 << k;
  }
  return 0;
}

/** After a key: ws ':' ws. */
function colon(): boolean {
  ws();
  if (b[i] !== COLON) return false;
  i++;
  ws();
  return true;
}

/**
 * After a value: ws, then ',' (true: another follows) or `close` (false); null when neither.
 */
function next(close: number): boolean | null {
  ws();
  if (b[i] === COMMA) {
    i++;
    ws();
    return true;
  }
  if (b[i] === close) {
    i++;
    return false;
  }
  return null;
}

/** Skip one JSON value at i (strings, nesting; not a full check); false when it runs off the end. */
function skipValue(): boolean {
  let depth = 0;
  while (i < n) {
    const c = b[i]!;
    if (c === Q) {
      i++;
      while (i < n && b[i] !== Q) i += b[i] === BSLASH ? 2 : 1;
      if (i >= n) return false;
      i++;
    } else if (c === LBRACE || c === LBRACK) {
      depth++;
      i++;
    } else if (c === RBRACE || c === RBRACK) {
      if (depth === 0) return true;
      depth--;
      i++;
    } else if (c === COMMA) {
      if (depth === 0) return true;
      i++;
    } else {
      i++;
    }
    if (depth === 0 && (c === Q || c === RBRACE || c === RBRACK)) return true;
  }
  return depth === 0;
}

/**
 * At a list element that must be an object with required keys (cmps, switches): past its
 * '{' (OK); BAD for another kind of value or `{}`; UNSURE for garbage.
 */
function openObject(): number {
  if (b[i] !== LBRACE) return startsValue(b[i]) ? BAD : UNSURE;
  i++;
  ws();
  if (b[i] !== RBRACE) return OK;
  i++;
  return BAD;
}

/**
 * The next member's key, as its bit in `names`, with i past ws ':' ws; BAD for a key not
 * in `names` (the objects are strict), UNSURE for a repeated key (JSON.parse's to settle)
 * or an odd spelling.
 */
function member(names: readonly string[], seen: number): number {
  const k = key(names);
  if (k < 0 || !colon()) return UNSURE;
  if (k === 0) return BAD;
  return (seen & k) !== 0 ? UNSURE : k;
}

const CMP_KEYS = ['type', 'size', 'const', 'arg1', 'arg2', 'pc'] as const;
const K_TYPE = 1, K_SIZE = 2, K_CONST = 4, K_ARG1 = 8, K_ARG2 = 16, K_PC = 32;
const SWITCH_KEYS = ['val', 'size', 'cases', 'pc'] as const;
const S_VAL = 1, S_SIZE = 2, S_CASES = 4, S_PC = 8;

/** One cmps element into w (8 words). */
function cmp(w: Words): number {
  const opened = openObject();
  if (opened !== OK) return opened;
  const out = w.room(8);
  const at = w.len;
  let seen = 0;
  let size = 0;
  let isConst = false;
  for (;;) {
    const k = member(CMP_KEYS, seen);
    if (k <= 0) return k;
    seen |= k;
    let r: number = OK;
    if (k === K_TYPE) r = u64(out, at);
    else if (k === K_ARG1) r = u64(out, at + 2);
    else if (k === K_ARG2) r = u64(out, at + 4);
    else if (k === K_PC) r = u64(out, at + 6);
    else if (k === K_SIZE) {
      size = smallInt();
      if (size === -2) return UNSURE;
      if (size !== 1 && size !== 2 && size !== 4 && size !== 8) return BAD;
    } else {
      const v = bool();
      if (v === -2) return UNSURE;
      if (v === -1) return BAD;
      isConst = v === true;
    }
    if (r !== OK) return r;
    const more = next(RBRACE);
    if (more === null) return UNSURE;
    if (!more) break;
  }
  const operands = K_ARG1 | K_ARG2 | K_PC;
  if ((seen & operands) !== operands) return BAD;
  if ((seen & K_TYPE) !== 0) {
    if ((seen & (K_SIZE | K_CONST)) !== 0) return BAD;
  } else {
    if ((seen & K_SIZE) === 0) return BAD;
    out[at] = cmpSizeBits(size) | (isConst ? CMP_CONST : 0);
    out[at + 1] = 0;
  }
  w.len += 8;
  return OK;
}

const head = new Uint32Array(4);

/** One switches element into w: one const comparison per case (engine/events.ts). */
function switchCase(w: Words): number {
  const opened = openObject();
  if (opened !== OK) return opened;
  const first = w.len;
  let seen = 0;
  let bits = 0;
  for (;;) {
    const k = member(SWITCH_KEYS, seen);
    if (k <= 0) return k;
    seen |= k;
    if (k === S_VAL || k === S_PC) {
      const r = u64(head, k === S_VAL ? 0 : 2);
      if (r !== OK) return r;
    } else if (k === S_SIZE) {
      bits = smallInt();
      if (bits === -2) return UNSURE;
      if (bits !== 8 && bits !== 16 && bits !== 32 && bits !== 64) return BAD;
    } else {
      if (b[i] !== LBRACK) return startsValue(b[i]) ? BAD : UNSURE;
      i++;
      ws();
      if (b[i] === RBRACK) i++;
      else {
        for (;;) {
          const out = w.room(8);
          const r = u64(out, w.len + 2);
          if (r !== OK) return r;
          w.len += 8;
          const more = next(RBRACK);
          if (more === null) return UNSURE;
          if (!more) break;
        }
      }
    }
    const more = next(RBRACE);
    if (more === null) return UNSURE;
    if (!more) break;
  }
  if (seen !== (S_VAL | S_SIZE | S_CASES | S_PC)) return BAD;
  const type = cmpSizeBits(bits / 8) | CMP_CONST;
  const out = w.u32;
  for (let at = first; at < w.len; at += 8) {
    out[at] = type;
    out[at + 1] = 0;
    out[at + 4] = head[0]!;
    out[at + 5] = head[1]!;
    out[at + 6] = head[2]!;
    out[at + 7] = head[3]!;
  }
  return OK;
}

/** One sites element: an ASCII string without escapes, hashed as engine/events.ts hashes it. */
function site(w: Words): number {
  if (b[i] !== Q) return startsValue(b[i]) ? BAD : UNSURE;
  const s = ++i;
  while (i < n && b[i] !== Q) {
    const c = b[i]!;
    if (c === BSLASH || c < 0x20 || c >= 0x80) return UNSURE;
    i++;
  }
  if (i >= n) return UNSURE;
  const e = i++;
  if (e - s > SITE_MAX) return BAD;
  const out = w.room(2);
  fnv1a64Bytes(b, s, e, out, w.len);
  w.len += 2;
  return OK;
}

const LISTS = ['pcs', 'sites', 'cmps', 'switches'] as const;
const L_PCS = 1, L_SITES = 2, L_CMPS = 4;

function pc(w: Words): number {
  // The common element, a plain decimal number up to 15 digits, without a call per byte.
  let c = b[i]!;
  if (c >= 0x31 && c <= 0x39) {
    const start = i;
    let v = c - 0x30;
    while (++i < n) {
      c = b[i]!;
      if (c < 0x30 || c > 0x39) break;
      v = v * 10 + (c - 0x30);
    }
    if (i - start <= 15 && c !== 0x2e && (c | 0x20) !== 0x65) {
      setHalves(w.room(2), w.len, v);
      w.len += 2;
      return OK;
    }
    i = start;
  }
  const out = w.room(2);
  const r = u64(out, w.len);
  if (r === OK) w.len += 2;
  return r;
}

/** The rest of the body after a bad element: well formed and no second list of the same name, or unsure. */
function restIsPlain(seenLists: number): boolean {
  // Finish the list the bad element is in (the element itself is skipped already).
  for (;;) {
    const more = next(RBRACK);
    if (more === null) return false;
    if (!more) break;
    if (!skipValue()) return false;
  }
  for (;;) {
    const more = next(RBRACE);
    if (more === null) return false;
    if (!more) break;
    const k = key(LISTS);
    if (k < 0 || !colon()) return false;
    if ((seenLists & k) !== 0) return false; // JSON.parse keeps the last of a repeated key
    seenLists |= k;
    if (!skipValue()) return false;
  }
  ws();
  return i === n;
}

/** Scan an events body (the bytes of an application/json request). */
export function scanEvents(body: Uint8Array): EventsScan {
  b = body;
  i = 0;
  n = body.length;
  try {
    return scan();
  } finally {
    b = new Uint8Array(0);
  }
}

function scan(): EventsScan {
  ws();
  if (b[i] !== LBRACE) return null;
  i++;
  ws();
  const segments: Segment[] = [];
  if (b[i] === RBRACE) {
    i++;
    ws();
    return i === n ? { kind: 'segments', segments } : null;
  }
  let seenLists = 0;
  for (;;) {
    const k = key(LISTS);
    if (k <= 0 || (seenLists & k) !== 0 || !colon()) return null;
    seenLists |= k;
    if (b[i] !== LBRACK) return null;
    i++;
    ws();
    const w = new Words();
    const element = k === L_PCS ? pc : k === L_SITES ? site : k === L_CMPS ? cmp : switchCase;
    if (b[i] === RBRACK) i++;
    else {
      for (let index = 0; ; index++) {
        const start = i;
        const r = element(w);
        if (r === UNSURE) return null;
        if (r === BAD) {
          i = start;
          if (!skipValue()) return null;
          const text = new TextDecoder().decode(b.subarray(start, i));
          if (!restIsPlain(seenLists)) return null;
          return { kind: 'invalid', key: LISTS[31 - Math.clz32(k)]!, index, text };
        }
        const more = next(RBRACK);
        if (more === null) return null;
        if (!more) break;
      }
    }
    const stride = k === L_PCS || k === L_SITES ? 2 : 8;
    segments.push({
      kind: stride === 2 ? 'pc' : 'cmp',
      records: w.len / stride,
      chunks: [new Uint8Array(w.u32.buffer, 0, w.len * 4)],
    });
    const more = next(RBRACE);
    if (more === null) return null;
    if (!more) break;
  }
  ws();
  return i === n ? { kind: 'segments', segments } : null;
}
