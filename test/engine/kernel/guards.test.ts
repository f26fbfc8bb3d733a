/** KCOV_UNIQUE_ENABLE guard indices: persistent, compact, charged, and bounded by the budget. */
import t from 'tap';
import { Engine } from '../../../src/engine/engine.js';
import { GUARD_SLOT_BYTES, GuardIndex, NO_GUARD, RETRY_AFTER_REFUSED } from '../../../src/engine/kernel/guards.js';
import { KernelMemory } from '../../../src/engine/kernel/memory.js';
import { MemoryBudget } from '../../../src/engine/memory.js';

/** Thread 1 of the default kernel in KCOV_UNIQUE_ENABLE mode on an area of `words`. */
function uniqueKernel(e: Engine, words: number, unique: number) {
  const k = e.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, words);
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, unique);
  return { e, k, fd };
}

t.test('init_pc_guard: indices from 1, stable per PC, kernel-wide; halves above 2^53 are distinct', async (t) => {
  const g = new GuardIndex(undefined, new KernelMemory(new MemoryBudget(1 << 30)));
  t.equal(g.indexOf(0x1000, 0xffffffff), 1);
  t.equal(g.indexOf(0x2000, 0xffffffff), 2);
  t.equal(g.indexOf(0x1000, 0xffffffff), 1, 'seen before: the same guard');
  t.equal(g.indexOf(0x1000, 0xfffffffe), 3, 'same low half, other high half');
  t.equal(g.indexOf(0, 0), 4, 'PC 0 is a PC like any other');
  for (let i = 0; i < 100_000; i++) g.indexOf(i * 4, 0x81234567);
  t.equal(g.indexOf(0x1000, 0xffffffff), 1, 'still 1 after the table grew');
  t.equal(g.indexOf(400, 0x81234567), 105, 'and the others kept theirs');
  t.equal(g.size, 100_004);
});

t.test('the table is charged as it grows (at most 24 bytes a PC), and refused growth means no guard', async (t) => {
  const budget = new MemoryBudget(1024 * GUARD_SLOT_BYTES);
  const account = new KernelMemory(budget);
  const g = new GuardIndex(undefined, account);
  for (let i = 0; i < 512; i++) t.not(g.indexOf(i, 1), NO_GUARD);
  t.equal(account.bytes('guards'), 1024 * GUARD_SLOT_BYTES, 'the first 1024 slots hold 512 PCs');
  t.equal(g.indexOf(9999, 1), NO_GUARD, 'the doubling does not fit: recorded, never de-duplicated');
  t.equal(g.indexOf(5, 1), 6, 'known PCs keep their guards');
  t.equal(budget.used, 1024 * GUARD_SLOT_BYTES);
});

t.test('KCOV_MAX_GUARDS caps the guards; a million distinct PCs cost about 24 MiB, all charged', async (t) => {
  const capped = new GuardIndex(2, new KernelMemory(new MemoryBudget(1 << 30)));
  t.equal(capped.indexOf(1, 0), 1);
  t.equal(capped.indexOf(2, 0), 2);
  t.equal(capped.indexOf(3, 0), NO_GUARD);
  const { e, k, fd } = uniqueKernel(new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 30, kernelCaps: { maxGuards: 1 << 21 } }), 1024, 16);
  const batch = new Uint32Array(2 * 4096);
  for (let round = 0; round < 256; round++) {
    for (let i = 0; i < 4096; i++) {
      batch[i * 2] = (round * 4096 + i) * 4;
      batch[i * 2 + 1] = 0xffffffff;
    }
    k.eventsBinary(1, 'pc', [new Uint8Array(batch.buffer)], batch.byteLength);
    k.setCount(k.descriptor(fd), 0);
  }
  const guards = e.budget.breakdown().guards;
  t.ok(guards >= (1 << 20) * GUARD_SLOT_BYTES && guards <= (1 << 21) * GUARD_SLOT_BYTES, `${guards} bytes charged for 1 Mi PCs`);
  t.same(e.checkInvariants(), []);
  e.deleteKernel('default');
  t.equal(e.budget.used, 0, 'released with the kernel');
});

t.test('a doubling needs room for the old and the new table at once; after the copy only the new one is charged', async (t) => {
  const fill = (g: GuardIndex, from: number, n: number) => {
    for (let i = from; i < from + n; i++) g.indexOf(i, 7);
  };
  const tight = new MemoryBudget((1024 + 2048) * GUARD_SLOT_BYTES - 1);
  const g1 = new GuardIndex(undefined, new KernelMemory(tight));
  fill(g1, 0, 512);
  t.equal(g1.indexOf(10_000, 7), NO_GUARD, 'old 1024 + new 2048 slots do not fit: refused');
  t.equal(tight.used, 1024 * GUARD_SLOT_BYTES, 'nothing of the refused table stays charged');
  const room = new MemoryBudget((1024 + 2048) * GUARD_SLOT_BYTES);
  const g2 = new GuardIndex(undefined, new KernelMemory(room));
  fill(g2, 0, 512);
  t.not(g2.indexOf(10_000, 7), NO_GUARD, 'they fit: the table grows');
  t.equal(room.used, 2048 * GUARD_SLOT_BYTES, 'the old table is given back after the copy');
  t.equal(g2.bytes, 2048 * GUARD_SLOT_BYTES);
});

t.test('after a refused growth the budget is asked again only every RETRY_AFTER_REFUSED new PCs', async (t) => {
  const budget = new MemoryBudget(1 << 30);
  const g = new GuardIndex(undefined, new KernelMemory(budget));
  // Take all but a little of the budget: the first table (1024 slots) does not fit.
  budget.charge((1 << 30) - 100, 'test', 'other');
  t.equal(g.indexOf(1, 0), NO_GUARD, 'refused');
  budget.release((1 << 30) - 100, 'other');
  let guarded = 0;
  for (let i = 0; i < RETRY_AFTER_REFUSED; i++) if (g.indexOf(100 + i, 0) !== NO_GUARD) guarded++;
  t.equal(guarded, 0, 'the next RETRY_AFTER_REFUSED new PCs get none without a budget check');
  t.equal(g.indexOf(1, 0), 1, 'room again, and the backoff is over: the next new PC gets a guard');
  t.equal(g.indexOf(1, 0), 1);
});

t.test('KCOV_UNIQUE_ENABLE reads a batch from its chunks as received: records split between chunks count once, in order', async (t) => {
  const run = (cuts: number[]) => {
    const { k, fd } = uniqueKernel(new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 28 }), 4096, 64);
    const batch = new Uint32Array(2 * 300);
    for (let i = 0; i < 300; i++) {
      batch[i * 2] = 0x81000000 + (i % 200) * 4; // 100 repeats: ignored
      batch[i * 2 + 1] = 0xffffffff;
    }
    const bytes = new Uint8Array(batch.buffer);
    // Chunks at odd offsets of a larger buffer, as socket reads can be.
    const backing = new Uint8Array(bytes.length + 1);
    backing.set(bytes, 1);
    const chunks: Uint8Array[] = [];
    let at = 0;
    for (const c of [...cuts, bytes.length]) {
      chunks.push(backing.subarray(1 + at, 1 + c));
      at = c;
    }
    const r = k.eventsBinary(1, 'pc', chunks, bytes.length);
    return { r, area: Array.from(new Uint32Array(k.descriptor(fd).area!.buffer.slice(0, 8 * 201))) };
  };
  const whole = run([]);
  t.same(whole.r, { accepted: 200, dropped: 0, ignored: 100, count: 200 });
  t.same(run([3, 5, 13, 800, 801, 2397]), whole, 'split at 3, 5, 13, 800, 801 and 2397 bytes');
  t.same(run([8, 16, 1024]), whole, 'split on record boundaries');
});
