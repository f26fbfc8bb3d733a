/** Engine.checkInvariants must see each kind of breakage it claims to see (else the fuzz proves nothing). */
import t from 'tap';
import { Engine } from '../../src/engine/engine.js';
import type { Descriptor, Thread } from '../../src/engine/model.js';

function setup() {
  const e = new Engine({ dialect: 'linux', ncpus: 2, memoryLimit: 1 << 20 });
  const k = e.kernel('default');
  const d = k.open();
  k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, 8);
  k.ioctl(d.fd, 'KCOV_ENABLE', 1, 'pc');
  return { e, k, d };
}

t.test('a consistent model has no violations', async (t) => {
  const { e, k } = setup();
  k.eventsJson(1, { pcs: [1, 2, 3, 4, 5, 6, 7, 8, 9] });
  t.same(e.checkInvariants(), []);
});

t.test('count past capacity: a violation unless userspace wrote it (PUT count)', async (t) => {
  const { e, k, d } = setup();
  d.area!.count = 99;
  t.match(e.checkInvariants().join('\n'), /count 99 > capacity 7/);
  k.setCount(d, 99);
  t.same(e.checkInvariants(), [], 'cover[0] = 99 is userspace\'s right');
});

t.test('an area nothing points at is an orphan', async (t) => {
  const { e, k, d } = setup();
  k.exitThread(1);
  (k.descriptors as Map<number, Descriptor>).delete(d.fd); // lost without the close that frees it
  t.match(e.checkInvariants().join('\n'), /orphan area of 64 bytes/);
});

t.test('a reachable area that was freed, and a double free, are seen', async (t) => {
  const { e, k, d } = setup();
  k.freeArea(d.area);
  const v = e.checkInvariants().join('\n');
  t.match(v, /reachable but was freed/);
  k.freeArea(d.area);
  t.match(e.checkInvariants().join('\n'), /1 frees of buffers that were not live/);
});

t.test('memory accounting and tables', async (t) => {
  const { e, k, d } = setup();
  e.budget.used += 8;
  t.match(e.checkInvariants().join('\n'), /budget.used 72 != sum of its categories 64/);
  e.budget.used -= 8;
  (k.threads as Map<number, Thread>).delete(1);
  t.match(e.checkInvariants().join('\n'), /owned by thread 1, which is not a live thread/);
  d.closed = true;
  t.match(e.checkInvariants().join('\n'), /in the table but marked closed/);
});

t.test('a pooled Linux section area is reachable (kcov_remote_areas), not an orphan', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 2, memoryLimit: 1 << 20 });
  const k = e.kernel('default');
  const fd = k.open().fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 8);
  k.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 'pc', area_size: 16, handles: ['0x0100000000000001'] });
  k.remotes.oneShot('0x0100000000000001', { context: 'task', tid: 2 }, () => []);
  t.equal(k.account.bytes('sections'), 16 * 8, 'the section area stays pooled after the stop');
  t.same(e.checkInvariants(), [], 'the pool is part of the kernel state the checker walks');
  k.exitThread(1);
  k.close(fd);
  t.same(e.checkInvariants(), [], 'still consistent once the descriptor is gone');
});
