/** foldRecords, the fold's one loop, and PcSet's presence window, against add() one key at a time. */
import t, { type Test } from 'tap';

import { foldRecords, PcSet, type Charger } from '../../../src/engine/cover/pcset.js';
import { EDGE_HASH, traceSignals } from '../../../src/engine/cover/signal.js';

function budget(limit = Infinity): Charger & { used: number } {
  return {
    used: 0,
    charge(bytes: number) {
      if (this.used + bytes > limit) throw new Error('ENOMEM');
      this.used += bytes;
    },
    release(bytes: number) {
      this.used -= bytes;
    },
  };
}

/** A trace of `n` PC records (lo, hi pairs) over `distinct` PCs, with loops as real traces have. */
function trace(n: number, distinct: number, seed: number): Uint32Array {
  let s = seed;
  const rnd = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const u = new Uint32Array(n * 2);
  let x = 0;
  for (let i = 0; i < n; i++) {
    x = rnd() < 0.05 ? Math.floor(rnd() * distinct) : (x + 1) % distinct;
    u[2 * i] = (0x81000000 + x * 4 + (rnd() < 0.01 ? 0x80000000 : 0)) >>> 0;
    u[2 * i + 1] = x % 3 === 0 ? 0xffffffff : 0;
  }
  return u;
}

const sorted = (s: PcSet) => [...s.sorted()].join(',');

const consistent = (t: Test, ...sets: PcSet[]) => {
  const errs: string[] = [];
  for (const s of sets) s.check('set', errs);
  t.same(errs, [], 'table and window consistent');
};

t.test('foldRecords holds the same keys and tags as add() per record, across growth and windows', async (t) => {
  for (const [n, distinct, seed] of [[5000, 40, 1], [20000, 9000, 2], [3, 3, 3], [0, 1, 4], [60000, 30000, 6]] as const) {
    const u = trace(n, distinct, seed);
    const a = new PcSet(budget(), 'a');
    const b = new PcSet(budget(), 'b');
    let added = 0;
    // In uneven pieces, as successive gates fold them.
    for (let from = 0; from < n; from += 777) added += foldRecords(u, from * 2, 2, Math.min(777, n - from), 7, a, null, EDGE_HASH, 0, null, null).pcs;
    let want = 0;
    for (let i = 0; i < n; i++) if (b.add(u[2 * i]!, u[2 * i + 1]!, 7) >= 0) want++;
    t.equal(added, want, `n=${n}: keys added`);
    t.equal(a.size, b.size);
    t.equal(sorted(a), sorted(b));
    consistent(t, a, b);
    for (let i = 0; i < n; i += 97) t.equal(a.tagAt(a.find(u[2 * i]!, u[2 * i + 1]!)), 7);
    // Every key is still found once more: nothing new.
    t.equal(foldRecords(u, 0, 2, n, 9, a, null, EDGE_HASH, 0, null, null).pcs, 0);
  }
});

t.test('the window covers a program\'s PCs; keys outside it (other high half, far away) still count', async (t) => {
  const a = new PcSet(budget(), 'a');
  const keys: [number, number][] = [];
  for (let i = 0; i < 3000; i++) keys.push([0x5000_0000 + i * 52, 0x5555]);
  keys.push([0x5000_0010, 0], [0xffff_fff0, 0x5555], [0, 0x5555], [0x0800_0000, 0x5555]);
  const u = new Uint32Array(keys.flat());
  t.equal(foldRecords(u, 0, 2, keys.length, 1, a, null, EDGE_HASH, 0, null, null).pcs, keys.length);
  t.equal(a.winHi, 0x5555);
  t.ok(a.winSpan >= 3000 * 52 && a.winSpan <= 2 ** 24, `span ${a.winSpan}`);
  consistent(t, a);
  t.equal(foldRecords(u, 0, 2, keys.length, 1, a, null, EDGE_HASH, 0, null, null).pcs, 0, 'all present, in the window or not');
  t.equal(a.bytes, a.slots * 12 + a.winSpan / 8, 'the window is charged with the table');
  a.clear();
  t.equal(a.winSpan, 0);
  t.equal(a.has(0x5000_0000, 0x5555), false);
  t.equal(foldRecords(u, 0, 2, 1, 1, a, null, EDGE_HASH, 0, null, null).pcs, 1, 'after clear the window is gone too');
  consistent(t, a);
});

t.test('foldRecords with signals adds the syzkaller signals of the trace, prev carried across pieces', async (t) => {
  const u = trace(30000, 500, 9);
  const p = new PcSet(budget(), 'p');
  const a = new PcSet(budget(), 'a');
  for (let from = 0; from < 30000; from += 1000) foldRecords(u, from * 2, 2, 1000, 1, p, a, EDGE_HASH, from === 0 ? 0 : u[from * 2 - 2]!, null, null);
  const want = new PcSet(budget(), 'w');
  const sig = traceSignals(u);
  for (let i = 0; i < sig.length; i += 2) want.add(sig[i]!, sig[i + 1]!, 1);
  t.equal(sorted(a), sorted(want));
  consistent(t, p, a);
});

t.test('foldRecords reads one word pair per stride (CMP records: their PC, the last word)', async (t) => {
  const u = new Uint32Array(8 * 3);
  for (let r = 0; r < 3; r++) {
    u.fill(0xdead, r * 8, r * 8 + 6);
    u[r * 8 + 6] = 0x1000 + r;
    u[r * 8 + 7] = 1;
  }
  const a = new PcSet(budget(), 'a');
  t.equal(foldRecords(u, 6, 8, 3, 1, a, null, EDGE_HASH, 0, null, null).pcs, 3);
  t.same([...a.sorted()], [0x1000, 1, 0x1001, 1, 0x1002, 1]);
});

t.test('a budget refusal stops growth: refused keys are counted, the rest stay consistent; the journal gets each new key', async (t) => {
  const u = trace(50000, 20000, 5);
  const b = budget(1024 * 12 * 4 + 2 ** 21); // room for 4096 slots and a window
  const a = new PcSet(b, 'a');
  const j = new PcSet(budget(), 'j');
  const f = foldRecords(u, 0, 2, 50000, 1, a, null, EDGE_HASH, 0, j, null);
  t.ok(f.refused > 0, 'some keys refused');
  t.equal(a.size, f.pcs);
  t.ok(a.size <= 3072);
  t.equal(sorted(j), sorted(a), 'the journal holds exactly what was added');
  t.equal(b.used, a.bytes);
  consistent(t, a);
  const none = new PcSet(budget(0), 'none');
  const g = foldRecords(u, 0, 2, 10, 1, none, null, EDGE_HASH, 0, null, null);
  t.equal(g.pcs, 0);
  t.equal(g.refused, 10, 'no table at all: every record refused');
  // A table but no room for a window: still exact, through the probe.
  const tight = new PcSet(budget(1024 * 12), 'tight');
  t.equal(foldRecords(u, 0, 2, 500, 1, tight, null, EDGE_HASH, 0, null, null).pcs, new Set(Array.from({ length: 500 }, (_, i) => `${u[2 * i]}:${u[2 * i + 1]}`)).size);
  t.equal(tight.winSpan, 0);
  consistent(t, tight);
});

t.test('the union folds appended records in the background, a slice at a time, without a gate', async (t) => {
  const { Engine } = await import('../../../src/engine/engine.js');
  const { FOLD_SLICE } = await import('../../../src/engine/cover/union.js');
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 256 * 1024 ** 2 });
  const queue: (() => void)[] = [];
  const idle: boolean[] = [];
  e.background = (fn, i) => {
    queue.push(fn);
    idle.push(i);
  };
  const k = e.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 4 * FOLD_SLICE);
  k.ioctl(fd, 'KCOV_ENABLE', 1, 0);
  const n = 2 * FOLD_SLICE + 5;
  const body = new Uint8Array(n * 8);
  const dv = new DataView(body.buffer);
  for (let i = 0; i < n; i++) dv.setUint32(i * 8, 0x81000000 + (i % 5000) * 4, true);
  k.eventsBinary(1, 'pc', [body], body.length);
  k.eventsBinary(1, 'pc', [body.subarray(0, 8)], 8);
  t.equal(queue.length, 1, 'one slice queued for any number of batches');
  t.same(idle, [true], 'to run at a pause in the traffic');
  t.equal(k.cover.pcs.size, 0, 'nothing folded on the request path');
  queue.shift()!();
  t.equal(k.cover.pcs.size, 0, 'a batch came after it was queued: not a pause, it waits again');
  t.same(idle, [true, true]);
  queue.shift()!();
  t.equal(k.cover.pcs.size, 5000, 'the first slice folded');
  t.equal(queue.length, 1, 'and queued the next, since more is pending');
  t.equal(idle[2], false, 'between requests, the pause having come');
  while (queue.length > 0) queue.shift()!();
  t.same(e.checkInvariants(), []);
  t.equal(k.cover.pcs.size, 5000);
  const all = new Uint32Array(body.buffer.slice(0));
  const whole = new Uint32Array(all.length + 2);
  whole.set(all);
  whole.set(all.subarray(0, 2), all.length);
  const sig = traceSignals(whole);
  t.equal(k.cover.signals.size, new Set(Array.from({ length: sig.length / 2 }, (_, i) => `${sig[2 * i]}:${sig[2 * i + 1]}`)).size, 'signals of the whole trace, across slices');
  // A gate now has nothing left to fold, and a slice after the kernel is gone does nothing.
  k.eventsBinary(1, 'pc', [body.subarray(0, 8)], 8);
  e.deleteKernel('default');
  t.doesNotThrow(() => queue.shift()!());
});

t.test('a set at its cap: refused PCs in the window are counted lost once, then skipped by the fold, and a clear forgets them', async (t) => {
  const b = budget(1024 * 12 + 2 ** 13); // 1024 slots and the smallest window
  const a = new PcSet(b, 'a');
  const u = new Uint32Array(2000 * 2);
  for (let i = 0; i < 2000; i++) u[2 * i] = 0x1000 + i * 4;
  const first = foldRecords(u, 0, 2, 2000, 1, a, null, EDGE_HASH, 0, null, null);
  t.equal(first.pcs, 768, 'the table takes 3/4 of its slots');
  t.equal(first.refused, 2000 - 768);
  const again = foldRecords(u, 0, 2, 2000, 1, a, null, EDGE_HASH, 0, null, null);
  t.same([again.pcs, again.refused], [0, 0], 'the same trace again: nothing added, nothing lost again, no probe');
  t.equal(a.has(0x1000 + 1999 * 4, 0), false, 'a refused PC is not in the set');
  consistent(t, a);
  a.clear();
  t.equal(a.shadowed, 0);
  consistent(t, a);
});

t.test('keys that moved past the window: the window is chosen again once the fold keeps probing for them', async (t) => {
  const a = new PcSet(budget(), 'a');
  const n = 70000;
  const near = new Uint32Array(n * 2);
  for (let i = 0; i < n; i++) near[2 * i] = 0x1000_0000 + i * 4;
  foldRecords(near, 0, 2, n, 1, a, null, EDGE_HASH, 0, null, null);
  const far = new Uint32Array(n * 2);
  for (let i = 0; i < n; i++) far[2 * i] = 0x1800_0000 + i * 4; // 128 MiB away: outside any span of the first keys
  foldRecords(far, 0, 2, n, 1, a, null, EDGE_HASH, 0, null, null);
  const covers = (lo: number) => ((lo - a.winLo) >>> 0) < a.winSpan;
  t.ok(covers(0x1800_0000) && !covers(0x1000_0000), 'the last doubling chose a window on the newer keys');
  // The older keys again: present, outside the window, each a probe, until the window moves to them.
  foldRecords(near, 0, 2, n, 1, a, null, EDGE_HASH, 0, null, null);
  foldRecords(near, 0, 2, n, 1, a, null, EDGE_HASH, 0, null, null);
  t.ok(covers(0x1000_0000), 'the window moved to the keys being folded');
  consistent(t, a);
  t.equal(a.size, 2 * n);
});

t.test('the window is a plain buffer, kept across doublings that keep its span, and charged as it is', async (t) => {
  const b = budget();
  const a = new PcSet(b, 'a');
  // Keys in one 64 KiB span: every doubling chooses the same window again.
  const u = new Uint32Array(2 * 12000);
  for (let i = 0; i < 12000; i++) u[2 * i] = 0x4000_0000 + i * 5;
  foldRecords(u, 0, 2, 2000, 1, a, null, EDGE_HASH, 0, null, null);
  const win = a.win;
  const slots = a.slots;
  // A view of a resizable buffer doubles the fold's cost in V8's compiled code.
  t.equal((win.buffer as ArrayBuffer & { resizable?: boolean }).resizable, false);
  foldRecords(u, 0, 2, 12000, 1, a, null, EDGE_HASH, 0, null, null);
  t.ok(a.slots > slots, 'the table doubled');
  t.equal(a.win, win, 'the same bits, not a new buffer for the collector');
  t.equal(b.used, a.bytes);
  t.equal(a.bytes, a.slots * 12 + win.byteLength);
  consistent(t, a);
  // Far keys widen the span: a larger window replaces it, and only it is charged.
  const far = new Uint32Array(2 * 20000);
  for (let i = 0; i < 20000; i++) far[2 * i] = 0x4000_0000 + 0x20_0000 + i * 5;
  foldRecords(far, 0, 2, 20000, 1, a, null, EDGE_HASH, 0, null, null);
  t.ok(a.win.length > win.length, 'a wider window');
  t.equal(b.used, a.slots * 12 + a.win.byteLength);
  consistent(t, a);
  a.release();
  t.equal(b.used, 0);
});

t.test('a descriptor closed with records not folded keeps its area, charged, until a slice folds them', async (t) => {
  const { Engine } = await import('../../../src/engine/engine.js');
  const MiB = 1024 * 1024;
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 64 * MiB, areaPool: 32 * MiB });
  const queue: (() => void)[] = [];
  e.background = (fn) => queue.push(fn);
  const k = e.kernel('default');
  const fill = (words: number, base: number) => {
    const fd = k.open(1).fd;
    k.ioctl(fd, 'KCOV_INIT_TRACE', 1, words);
    k.ioctl(fd, 'KCOV_ENABLE', 1, 0);
    const body = new Uint8Array(1000 * 8);
    const dv = new DataView(body.buffer);
    for (let i = 0; i < 1000; i++) dv.setUint32(i * 8, base + i * 4, true);
    k.eventsBinary(1, 'pc', [body], body.length);
    k.ioctl(fd, 'KCOV_DISABLE', 1, 0);
    k.close(fd);
    return fd;
  };
  fill(2 * MiB, 0x81000000); // 16 MiB
  t.equal(k.cover.retiredBuffers().length, 1, 'closed, its area waits for the fold');
  t.equal(e.budget.breakdown().areas, 16 * MiB, 'still charged');
  t.same(e.checkInvariants(), []);
  while (queue.length > 0) queue.shift()!();
  t.equal(k.cover.pcs.size, 1000, 'the slice folded it');
  t.equal(k.cover.retiredBuffers().length, 0, 'and gave it back');
  t.equal(e.budget.breakdown().areas, 0);

  fill(2 * MiB, 0x82000000);
  t.equal(k.cover.retiredBuffers().length, 1);
  t.equal(k.cover.takeNew(k.open(2).trace() ?? k.cpuArea(k.cpus[0]!, 1024), 'pc').records.length >= 0, true);
  t.equal(k.cover.retiredBuffers().length, 0, 'a read of the union (a gate) folds it first');
  t.equal(k.cover.pcs.size, 2000);

  // A new area of a waiting one's size takes its pages: that one is folded and freed first.
  fill(2 * MiB, 0x84000000);
  const waiting = k.cover.retiredBuffers()[0];
  const fdSame = k.open(4).fd;
  k.ioctl(fdSame, 'KCOV_INIT_TRACE', 4, 2 * MiB);
  t.equal(k.cover.retiredBuffers().length, 0, 'the waiting area of that size was folded');
  t.equal(k.descriptor(fdSame).area!.buffer, waiting, 'and its buffer reused');
  k.close(fdSame);
  t.equal(k.cover.pcs.size, 3000);

  // Three areas of other sizes wait; a 36 MiB area needs their room: they are folded and freed, not ENOMEM.
  for (let i = 0; i < 3; i++) fill((i + 1) * MiB, 0x83000000 + i * 0x100000);
  t.equal(k.cover.retiredBuffers().length, 3);
  const fd = k.open(3).fd;
  t.doesNotThrow(() => k.ioctl(fd, 'KCOV_INIT_TRACE', 3, 4.5 * MiB), 'memory pressure folds what waits');
  t.equal(k.cover.retiredBuffers().length, 0);
  t.equal(k.cover.pcs.size, 6000, 'and nothing of it was lost');
  t.same(e.checkInvariants(), []);
});
