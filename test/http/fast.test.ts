/**
 * A fast check (src/http/fast.ts) may only accept what its zod schema accepts,
 * and must then yield what zod yields; anything else it declines (undefined)
 * and zod decides. Random inputs near the easy subset, both ways.
 */
import fc from 'fast-check';
import t from 'tap';
import { z } from 'zod';
import { CountBody, IoctlBody, JsonEvents } from '../../schemas/index.js';
import { countBody, eventsBody, ioctlBody } from '../../src/http/fast.js';

function agrees(check: (d: unknown) => unknown, schema: z.ZodType, data: unknown): string | null {
  const fast = check(data);
  if (fast === undefined) return null; // declined: zod decides
  const slow = schema.safeParse(data);
  if (!slow.success) return `accepted what zod rejects: ${JSON.stringify(data)}`;
  if (JSON.stringify(slow.data) !== JSON.stringify(fast)) return `yields ${JSON.stringify(fast)}, zod ${JSON.stringify(slow.data)}`;
  return null;
}

const u64ish = fc.oneof(
  fc.nat(), fc.maxSafeNat(), fc.integer({ min: -5, max: 5 }), fc.double(), fc.constant(2 ** 53), fc.constant(-0),
  fc.constantFrom('0x10', '0XfF', '00', '12', '0x', '-1', ' 1', '1e3', 'zz', ''), fc.stringMatching(/^0x[0-9a-fA-F]{0,17}$/),
  fc.constant(null), fc.boolean(),
);

t.test('events body: {"pcs": […]} fast, the rest to zod', async (t) => {
  const good = fc.oneof(fc.maxSafeNat(), fc.stringMatching(/^(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})$/));
  const bodies = fc.oneof(
    fc.record({ pcs: fc.array(good, { maxLength: 8 }) }),
    fc.record({ pcs: fc.array(u64ish, { maxLength: 8 }) }),
    fc.record({ pcs: fc.array(u64ish, { maxLength: 4 }), sites: fc.array(fc.string(), { maxLength: 2 }) }, { requiredKeys: [] }),
    fc.dictionary(fc.constantFrom('pcs', 'x', 'cmps'), fc.array(u64ish, { maxLength: 3 })),
    fc.anything(),
  );
  let taken = 0;
  fc.assert(fc.property(bodies, (b) => {
    if (eventsBody(b) !== undefined) taken++;
    const why = agrees(eventsBody, JsonEvents, b);
    if (why !== null) throw new Error(why);
  }), { numRuns: 2000 });
  t.ok(taken > 300, `${taken} bodies took the fast path`);
  t.same(eventsBody({ pcs: [1, '0x2', '3'] }), { pcs: [1, '0x2', '3'] });
  t.equal(eventsBody({ pcs: [-1] }), undefined, 'a negative PC goes to zod (and its error)');
});

t.test('count and ioctl bodies agree with zod', async (t) => {
  fc.assert(fc.property(fc.oneof(fc.record({ count: u64ish }), fc.anything()), (b) => {
    const why = agrees(countBody, CountBody, b);
    if (why !== null) throw new Error(why);
  }), { numRuns: 1000 });
  const arg = fc.oneof(u64ish, fc.string(), fc.constant(undefined), fc.object());
  fc.assert(fc.property(fc.oneof(fc.record({ tid: u64ish, arg }, { requiredKeys: ['tid'] }), fc.anything()), (b) => {
    const why = agrees(ioctlBody, IoctlBody, b);
    if (why !== null) throw new Error(why);
  }), { numRuns: 1000 });
  t.pass('no disagreement');
});
