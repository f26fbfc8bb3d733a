/**
 * src/http/codecs/events-json.ts: what the byte scanner decides, JSON.parse, zod
 * and engine/events.ts decodeJsonEvents decide the same way.
 */
import fc from 'fast-check';
import t from 'tap';
import { JsonEvents } from '../../../schemas/events.js';
import { decodeJsonEvents, type Segment } from '../../../src/engine/events.js';
import { scanEvents } from '../../../src/http/codecs/events-json.js';
import { boundedParse } from '../../../src/http/validate.js';

/** The old path: JSON.parse, zod, decodeJsonEvents; null when any of them refuses. */
function reference(text: string): Segment[] | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (boundedParse(JsonEvents as never, v).issues !== null) return null;
  try {
    return decodeJsonEvents(v as Record<string, unknown>, Object.keys(v as object));
  } catch {
    return null;
  }
}

const words = (segs: Segment[]) => segs.map((s) => {
  const all = new Uint8Array(s.chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of s.chunks) {
    all.set(c, at);
    at += c.length;
  }
  return { kind: s.kind, records: s.records, words: Array.from(new Uint32Array(all.buffer)) };
});

const hex = (n: bigint, pad: number, upper: boolean) => `0${upper ? 'X' : 'x'}${'0'.repeat(pad)}${upper ? n.toString(16).toUpperCase() : n.toString(16)}`;
const u64 = fc.oneof(
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  fc.integer({ min: 0, max: 2 ** 32 }),
  fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(3), fc.boolean()).map(([n, p, u]) => hex(n, p, u)),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((n) => n.toString()),
);
const odd = fc.constantFrom<unknown>(-1, 1.5, 2 ** 53, 1e21, 'x', '', '0x', '0xg', ' 1', '-1', true, false, null, {}, [], [1],
  '0x' + 'f'.repeat(17), '0x' + '0'.repeat(20) + '1', '18446744073709551616', '0'.repeat(25) + '7', '99999999999999999999');
const value = fc.oneof({ weight: 8, arbitrary: u64 }, { weight: 1, arbitrary: odd });
const cmp = fc.oneof(
  fc.record({ size: fc.constantFrom<unknown>(1, 2, 4, 8, 3, '8', true), const: fc.constantFrom<unknown>(true, false, 1, null), arg1: value, arg2: value, pc: value }, { requiredKeys: ['size', 'arg1', 'arg2', 'pc'] }),
  fc.record({ type: value, arg1: value, arg2: value, pc: value, size: fc.constant(8), junk: fc.constant(1) }, { requiredKeys: ['type', 'arg1', 'arg2', 'pc'] }),
  odd,
);
const sw = fc.oneof(
  fc.record({ val: value, size: fc.constantFrom<unknown>(8, 16, 32, 64, 12, '8'), cases: fc.oneof(fc.array(value, { maxLength: 20 }), odd), pc: value }, { requiredKeys: ['val', 'size', 'cases', 'pc'] }),
  fc.record({ val: value, size: fc.constant(8), cases: fc.array(value), pc: value, extra: fc.constant(0) }, { requiredKeys: [] }),
  odd,
);
const site = fc.oneof(fc.string({ maxLength: 20 }), fc.string({ unit: 'grapheme', maxLength: 5 }), fc.constant('x'.repeat(4097)), fc.constant('y'.repeat(4096)), odd);
const mixed = fc.record({
  pcs: fc.array(value, { maxLength: 40 }),
  cmps: fc.array(cmp, { maxLength: 10 }),
  switches: fc.array(sw, { maxLength: 4 }),
  sites: fc.array(site, { maxLength: 4 }),
  other: fc.array(value, { maxLength: 2 }),
}, { requiredKeys: [] });
/** Bodies that are mostly valid, so that decoded records are compared too. */
const valid = fc.record({
  pcs: fc.array(u64, { maxLength: 40 }),
  cmps: fc.array(fc.oneof(
    fc.record({ size: fc.constantFrom(1, 2, 4, 8), const: fc.boolean(), arg1: u64, arg2: u64, pc: u64 }, { requiredKeys: ['size', 'arg1', 'arg2', 'pc'] }),
    fc.record({ type: u64, arg1: u64, arg2: u64, pc: u64 })), { maxLength: 10 }),
  switches: fc.array(fc.record({ val: u64, size: fc.constantFrom(8, 16, 32, 64), cases: fc.array(u64, { maxLength: 20 }), pc: u64 }), { maxLength: 4 }),
  sites: fc.array(fc.string({ maxLength: 20 }), { maxLength: 4 }),
}, { requiredKeys: [] });
const body = fc.oneof(valid, mixed);
/** The JSON text, spaced one of several ways, sometimes with a spelling only the slow path takes. */
const text = fc.tuple(body, fc.constantFrom<string | number>(0, 1, '\t', ' \r\n'), fc.constantFrom('', '1e0', '1.0', '-0', '\\u0031', 'dup')).map(([b, space, twist]) => {
  let s = JSON.stringify(b, null, space);
  if (twist === 'dup') s = s.replace(/^\{/, '{"pcs":[1],').replace('{"pcs":[1],}', '{"pcs":[1]}');
  else if (twist !== '') s = s.replace(/(?<=[[,]\s*)7(?=\s*[,\]])/, twist === '\\u0031' ? '"\\u0031"' : twist);
  return s;
});

t.test('the scanner decides as JSON.parse, zod and decodeJsonEvents do', (t) => {
  let decided = 0;
  let refused = 0;
  fc.assert(fc.property(text, (s) => {
    const want = reference(s);
    const got = scanEvents(Buffer.from(s));
    if (got === null) return true;
    if (got.kind === 'segments') {
      decided++;
      if (want === null) return false;
      return JSON.stringify(words(got.segments)) === JSON.stringify(words(want));
    }
    refused++;
    // Surely invalid: the slow path refuses it too, and zod refuses the element named.
    if (want !== null) return false;
    return boundedParse(JsonEvents as never, { [got.key]: [JSON.parse(got.text)] }).issues !== null;
  }), { numRuns: 3000, seed: 11 });
  t.ok(decided > 300, `most valid bodies are decoded by the scanner (${decided})`);
  t.ok(refused > 300, `most invalid ones are refused by it (${refused})`);
  t.end();
});

t.test('a 2 MiB body of {} elements is refused at its first element', (t) => {
  const n = Math.floor((2 * 1024 * 1024) / 3);
  const r = scanEvents(Buffer.from(`{"cmps":[${Array(n).fill('{}').join(',')}]}`));
  t.same(r, { kind: 'invalid', key: 'cmps', index: 0, text: '{}' });
  t.end();
});

t.test('what the scanner leaves to the slow path', (t) => {
  for (const s of ['{"pcs":[1.0]}', '{"pcs":[1e3]}', '{"pcs":[-0]}', '{"pcs":["\\u0031"]}', '{"pcs":[1],"pcs":[2]}', '{"pcs":[1],"bogus":[]}',
    '{"sites":["é"]}', '{"pcs":["0x11112222333344445"]}', '{"pcs":["18446744073709551616"]}', '{"pcs":[01]}', '{"pcs":[1,]}', '[1]', '{"pcs":[1]} x',
    '\ufeff{"pcs":[1]}', '{"pcs":[1]', '{"pcs":[1,{}],"pcs":[2]}']) {
    t.equal(scanEvents(Buffer.from(s)), null, s);
  }
  t.end();
});

t.test('key order is the body\'s: a batch of pcs then cmps is two segments in that order', (t) => {
  const r = scanEvents(Buffer.from('{"cmps":[{"type":1,"arg1":2,"arg2":3,"pc":4}],"pcs":["0xffffffff81000010"]}'));
  t.ok(r !== null && r.kind === 'segments');
  if (r !== null && r.kind === 'segments') {
    t.same(words(r.segments), [{ kind: 'cmp', records: 1, words: [1, 0, 2, 0, 3, 0, 4, 0] }, { kind: 'pc', records: 1, words: [0x81000010, 0xffffffff] }]);
  }
  t.end();
});
