import t from 'tap';
import { formatU64, parseU64, scratch, u64Clamped } from '../../src/wire/u64.js';
import { fnv1a64 } from '../../src/wire/records.js';

t.test('parseU64 accepts hex, padded hex, decimal strings and safe integers', async (t) => {
  const cases: [unknown, number, number][] = [
    ['0xffffffff81000010', 0x81000010, 0xffffffff],
    ['0x000000000000002a', 42, 0],
    ['0x0', 0, 0],
    ['0x00000000', 0, 0],
    ['18446744073709551615', 0xffffffff, 0xffffffff],
    ['4294967296', 0, 1],
    [17, 17, 0],
    [2 ** 40 + 5, 5, 256],
  ];
  for (const [input, lo, hi] of cases) {
    t.ok(parseU64(input), `accepts ${String(input)}`);
    t.same([scratch[0], scratch[1]], [lo, hi], `halves of ${String(input)}`);
  }
});

t.test('parseU64 rejects what is not a u64', async (t) => {
  for (const bad of ['18446744073709551616', '0x1ffffffffffffffff', '-1', '0x', 'abc', '1.5', -1, 1.5, 2 ** 53, null, true, {}]) {
    t.notOk(parseU64(bad), `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('formatU64 writes lowercase hex without padding', async (t) => {
  t.equal(formatU64(0, 0), '0x0');
  t.equal(formatU64(0x2a, 0), '0x2a');
  t.equal(formatU64(0x81000010, 0xffffffff), '0xffffffff81000010');
  t.equal(formatU64(1, 1), '0x100000001');
});

t.test('u64Clamped saturates above 2^53 so limit checks still fail', async (t) => {
  t.equal(u64Clamped('0xffffffffffffffff'), Number.MAX_SAFE_INTEGER + 1);
  t.equal(u64Clamped('8'), 8);
  t.equal(u64Clamped('x'), null);
});

t.test('FNV-1a-64 matches the reference vectors', async (t) => {
  const out = new Uint32Array(2);
  // offset basis for the empty string; published vectors for "a" and "foobar".
  const vectors: [string, string][] = [
    ['', '0xcbf29ce484222325'],
    ['a', '0xaf63dc4c8601ec8c'],
    ['foobar', '0x85944171f73967e8'],
    ['net/ipv4/tcp.c:123', '0x864378d0dcd5504f'],
  ];
  for (const [s, want] of vectors) {
    fnv1a64(s, out, 0);
    t.equal(formatU64(out[0]!, out[1]!), want, JSON.stringify(s));
  }
});
