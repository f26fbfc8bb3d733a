/** KCOV_UNIQUE_ENABLE guard indices: persistent, compact, charged, and bounded by the budget. */
import t from 'tap';
import { Engine } from '../../../src/engine/engine.js';
import { GUARD_SLOT_BYTES, GuardIndex, NO_GUARD } from '../../../src/engine/kernel/guards.js';
import { KernelMemory } from '../../../src/engine/kernel/memory.js';
import { MemoryBudget } from '../../../src/engine/memory.js';

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
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 30, kernelCaps: { maxGuards: 1 << 21 } });
  const k = e.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 1024);
  k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 16);
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
