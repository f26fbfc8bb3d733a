import t from 'tap';
import { Area, CMP_STRIDE, PC_STRIDE } from '../../src/engine/area.js';
import { MemoryBudget } from '../../src/engine/memory.js';
import { errnoOf } from '../helpers.js';

function pcBytes(...v: number[]): Uint8Array {
  const b = new Uint8Array(v.length * 8);
  const dv = new DataView(b.buffer);
  v.forEach((x, i) => dv.setUint32(i * 8, x, true));
  return b;
}

t.test('capacity is floor((words - 1) / stride) in both modes', async (t) => {
  // Linux __sanitizer_cov_trace_pc: pos < size; write_comp_data: (1 + count*4 + 4) * 8 <= size * 8.
  for (const words of [2, 3, 4, 5, 6, 8, 9, 13, 64]) {
    const a = Area.allocate(words);
    t.equal(a.capacity(PC_STRIDE), words - 1, `pc capacity of ${words} words`);
    t.equal(a.capacity(CMP_STRIDE), Math.floor((words - 1) / 4), `cmp capacity of ${words} words`);
  }
});

t.test('a full area drops PCs and the count stays put', async (t) => {
  const a = Area.allocate(4);
  t.ok(a.pushPC(1, 0));
  t.ok(a.pushPC(2, 0));
  t.ok(a.pushPC(3, 0));
  t.notOk(a.pushPC(4, 0), 'fourth PC dropped: capacity is size - 1');
  t.equal(a.count, 3);
  t.same([...a.u32.subarray(2, 8)], [1, 0, 2, 0, 3, 0]);
});

t.test('CMP records need four free words', async (t) => {
  const a = Area.allocate(9); // capacity 2
  const rec = new Uint32Array([3, 0, 10, 0, 20, 0, 0x1234, 0]);
  t.ok(a.pushCmp(rec));
  t.ok(a.pushCmp(rec));
  t.notOk(a.pushCmp(rec), 'third record does not fit in 9 words');
  t.equal(a.count, 2);
  const eight = Area.allocate(8); // capacity 1: words 1..4 fit, 5..8 would need word 8
  t.ok(eight.pushCmp(rec));
  t.notOk(eight.pushCmp(rec));
});

t.test('appendChunks copies records that straddle chunks and stops at capacity', async (t) => {
  const a = Area.allocate(5); // 4 PCs
  const body = pcBytes(11, 22, 33, 44, 55, 66);
  const chunks = [body.subarray(0, 3), body.subarray(3, 13), body.subarray(13, 30), body.subarray(30)];
  t.equal(a.appendChunks(chunks, 6, PC_STRIDE), 4, 'four of six fit');
  t.equal(a.count, 4);
  t.same([...a.u32.filter((_, i) => i % 2 === 0)], [4, 11, 22, 33, 44]);
  t.equal(a.appendChunks([pcBytes(77)], 1, PC_STRIDE), 0, 'full: nothing taken');
});

t.test('a count set past capacity makes every record drop', async (t) => {
  const a = Area.allocate(8);
  a.count = 1000;
  t.notOk(a.pushPC(1, 0));
  t.equal(a.appendChunks([pcBytes(1)], 1, PC_STRIDE), 0);
  t.equal(a.count, 1000, 'count shown as stored');
  t.equal(a.visible(PC_STRIDE), 7, 'reads show at most capacity');
});

t.test('counts beyond 32 bits are kept whole in the count word', async (t) => {
  const a = Area.allocate(2);
  a.count = 2 ** 40 + 7;
  t.equal(a.count, 2 ** 40 + 7);
  t.equal(a.u32[0], 7);
  t.equal(a.u32[1], 256);
});

t.test('the memory budget refuses past its limit with ENOMEM and recovers on release', async (t) => {
  const b = new MemoryBudget(100);
  b.charge(64, 'a');
  t.equal(errnoOf(() => b.charge(64, 'b')), 'ENOMEM', 'ENOMEM past the limit');
  t.equal(b.used, 64, 'a refused charge takes nothing');
  b.release(64);
  b.charge(100, 'c');
  t.equal(b.used, 100);
});

t.test('the write stamp: every writer bumps it, a refused write does not, windows share it', async (t) => {
  const a = Area.allocate(5); // 4 PC records, 1 CMP record
  const s = a.stamp;
  let last = s.writes;
  const bumped = (what: string, yes: boolean) => {
    if (yes) t.ok(s.writes > last, `${what} bumps the stamp`);
    else t.equal(s.writes, last, `${what} leaves it`);
    last = s.writes;
  };
  a.pushPC(1, 0);
  bumped('pushPC', true);
  a.appendChunks([pcBytes(2, 3)], 2, PC_STRIDE);
  bumped('appendChunks', true);
  a.count = 1;
  bumped('the count setter', true);
  a.touch();
  bumped('touch', true);
  a.appendChunks([pcBytes(4, 5, 6, 7)], 4, PC_STRIDE);
  bumped('appendChunks that fills the area', true);
  t.notOk(a.pushPC(8, 0));
  bumped('a dropped pushPC', false);
  t.equal(a.appendChunks([pcBytes(9)], 1, PC_STRIDE), 0);
  bumped('an appendChunks with no room', false);
  a.count = 0;
  t.ok(a.pushCmp(new Uint32Array(8)));
  bumped('pushCmp', true);
  t.notOk(a.pushCmp(new Uint32Array(8)));
  bumped('a dropped pushCmp', false);
  const w = a.window(2);
  t.equal(w.stamp, s, 'a window shares its area\'s stamp');
  bumped('making a window (a new view of known memory counts as a write)', true);
  w.count = 0;
  bumped('a write through the window', true);
  t.equal(new Area(a.buffer).stamp, s, 'any Area over the buffer shares it');
  t.not(Area.allocate(5).stamp.id, s.id, 'another buffer, another identity');
});
