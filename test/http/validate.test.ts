/** The bounded validator gives zod's value, or a few of zod's issues, at a cost linear in the input. */
import fc from 'fast-check';
import t from 'tap';
import { safeParse, type $ZodType } from 'zod/v4/core';
import * as S from '../../schemas/index.js';
import { boundedParse, MAX_ISSUES } from '../../src/http/validate.js';

const BODIES: Record<string, unknown> = {
  KernelCreate: S.KernelCreate, DescriptorOpen: S.DescriptorOpen, IoctlBody: S.IoctlBody, CountBody: S.CountBody,
  JsonEvents: S.JsonEvents, ThreadPut: S.ThreadPut, SectionBody: S.SectionBody,
};

const u64ish = fc.oneof(fc.integer({ min: -2, max: 2 ** 40 }), fc.constantFrom('0x10', '0xg', '17', '', 'x', 2 ** 60, 1.5), fc.boolean(), fc.constant(null));
const cmp = fc.record({ size: fc.constantFrom(1, 2, 4, 8, 3), const: fc.boolean(), type: u64ish, arg1: u64ish, arg2: u64ish, pc: u64ish, junk: u64ish }, { requiredKeys: [] });
const u64 = fc.oneof(fc.integer({ min: 0, max: 2 ** 40 }), fc.constantFrom('0x10', '17', '0xFFFFFFFFFFFFFFFF'));
const tid = fc.integer({ min: 1, max: 100 });
/** Bodies that are often valid for one of the schemas, so values are compared too. */
const good = fc.oneof(
  fc.record({ pcs: fc.array(u64, { maxLength: 600 }), sites: fc.array(fc.string(), { maxLength: 3 }),
    cmps: fc.array(fc.oneof(fc.record({ size: fc.constantFrom(1, 2, 4, 8), const: fc.boolean(), arg1: u64, arg2: u64, pc: u64 }, { requiredKeys: ['size', 'arg1', 'arg2', 'pc'] }),
      fc.record({ type: u64, arg1: u64, arg2: u64, pc: u64 })), { maxLength: 300 }),
    switches: fc.array(fc.record({ val: u64, size: fc.constantFrom(8, 16, 32, 64), cases: fc.array(u64, { maxLength: 300 }), pc: u64 }), { maxLength: 3 }) }, { requiredKeys: [] }),
  fc.record({ tid, arg: fc.oneof(u64, fc.constant(null), fc.dictionary(fc.string({ maxLength: 3 }), u64)) }, { requiredKeys: ['tid'] }),
  fc.record({ count: u64 }), fc.record({ pid: tid, parent: tid }, { requiredKeys: [] }), fc.record({ tid }, { requiredKeys: [] }),
  fc.record({ name: fc.constantFrom('k1', 'fz'), dialect: fc.constantFrom('linux', 'netbsd'), ncpus: fc.integer({ min: 1, max: 4 }), config: fc.dictionary(fc.string({ maxLength: 4 }), fc.boolean()) }, { requiredKeys: ['dialect'] }),
  fc.record({ handle: u64 }), fc.record({ subsystem: u64, id: u64 }),
);
const body = fc.oneof(
  { weight: 6, arbitrary: good },
  { weight: 1, arbitrary: fc.record({ pcs: fc.array(u64ish, { maxLength: 600 }), cmps: fc.array(cmp, { maxLength: 300 }), sites: fc.array(fc.oneof(fc.string(), u64ish), { maxLength: 3 }),
    switches: fc.array(fc.record({ val: u64ish, size: fc.constantFrom(8, 16, 7), cases: fc.array(u64ish, { maxLength: 300 }), pc: u64ish }, { requiredKeys: [] }), { maxLength: 3 }),
    tid: u64ish, arg: fc.oneof(u64ish, fc.dictionary(fc.string({ maxLength: 3 }), u64ish)), count: u64ish, pid: u64ish, parent: u64ish,
    name: fc.constantFrom('k1', 'a b', 7), dialect: fc.constantFrom('linux', 'plan9'), config: fc.dictionary(fc.string({ maxLength: 4 }), fc.oneof(fc.boolean(), u64ish)),
    handle: u64ish, subsystem: u64ish, id: u64ish, x: u64ish }, { requiredKeys: [] }) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

t.test('same value as zod on valid input, an error on invalid input, for every JSON body schema', async (t) => {
  let valid = 0;
  for (const [name, schema] of Object.entries(BODIES)) {
    fc.assert(fc.property(body, (data) => {
      const z = safeParse(schema as $ZodType, data);
      const b = boundedParse(schema as $ZodType, data);
      if (z.success !== (b.issues === null)) throw new Error(`${name}: zod ${z.success ? 'accepts' : 'refuses'} ${JSON.stringify(data).slice(0, 300)}`);
      if (z.success) {
        valid++;
        if (JSON.stringify(b.value) !== JSON.stringify(z.data)) throw new Error(`${name}: value ${JSON.stringify(b.value).slice(0, 200)} != zod's ${JSON.stringify(z.data).slice(0, 200)}`);
      }
      else {
        if (b.issues!.length > MAX_ISSUES) throw new Error(`${b.issues!.length} issues`);
        // Each reported issue is one zod reports too (same path and message), or the walk's own strict-key or union summary.
        const zs = new Set(z.error.issues.map((i) => `${i.path.join('/')}: ${i.message}`));
        for (const i of b.issues!) {
          if (i.code === 'invalid_union' || i.code === 'unrecognized_keys') continue;
          if (!zs.has(`${i.path.join('/')}: ${i.message}`)) throw new Error(`${name}: issue ${i.path.join('/')}: ${i.message} is not zod's (${[...zs].slice(0, 5).join(' | ')})`);
        }
      }
    }), { seed: 7, numRuns: 150 });
  }
  t.ok(valid > 100, `valid inputs compared by value (${valid})`);
  t.end();
});

t.test('a 2 MiB list of invalid elements gives the first few issues with their paths', async (t) => {
  const n = (2 * 1024 * 1024) / 3;
  const data = { cmps: Array.from({ length: n }, () => ({})), pcs: Array.from({ length: n }, () => 'nope') };
  const r = boundedParse(S.JsonEvents as unknown as $ZodType, data);
  t.ok(r.issues !== null && r.issues.length <= MAX_ISSUES && r.issues.length > 0, 'a few issues');
  t.same(r.issues![0]!.path, ['pcs', 0], 'the path of the first bad element');
  const late = { pcs: [...Array.from({ length: 100_000 }, (_, i) => i), 'bad'] };
  const r2 = boundedParse(S.JsonEvents as unknown as $ZodType, late);
  t.same(r2.issues?.[0]?.path, ['pcs', 100_000], 'an index past the first slice is the array index');
  const keys = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, 1]));
  const r3 = boundedParse(S.ThreadPut as unknown as $ZodType, keys);
  t.equal(r3.issues?.length, 1);
  t.ok(r3.issues![0]!.message.length < 200, 'unknown keys are named, a few of them');
  const r4 = boundedParse(S.KernelCreate as unknown as $ZodType, { dialect: 'linux', config: keys });
  t.ok(r4.issues !== null && r4.issues.length === MAX_ISSUES, 'a record of bad values stops at the limit');
});
