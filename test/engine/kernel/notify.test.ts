/** Change notification wakes only the waiters of what changed, and charges each waiter while it waits. */
import t from 'tap';
import { Engine } from '../../../src/engine/engine.js';
import { COST } from '../../../src/engine/kernel/costs.js';
import { fdKey, remoteKey } from '../../../src/engine/kernel/notify.js';
import { errnoOf } from '../../helpers.js';

function setup() {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1 << 20 });
  const k = e.kernel('default');
  const fds = [1, 2].map((tid) => {
    const fd = k.open(tid).fd;
    k.ioctl(fd, 'KCOV_INIT_TRACE', tid, 64);
    k.ioctl(fd, 'KCOV_ENABLE', tid, 'pc');
    return fd;
  });
  return { e, k, fds };
}

t.test('a write wakes the waiters of its buffer, not those of another descriptor', async (t) => {
  const { k, fds } = setup();
  const woke: string[] = [];
  const buf = (fd: number) => k.descriptor(fd).area!.buffer;
  const off = [
    k.changes.watchOn([fdKey(fds[0]!), buf(fds[0]!)], () => woke.push('a')),
    k.changes.watchOn([fdKey(fds[1]!), buf(fds[1]!)], () => woke.push('b')),
  ];
  k.eventsJson(2, { pcs: [1, 2] });
  t.same(woke, ['b'], 'only the waiter of the written descriptor');
  k.setCount(k.descriptor(fds[0]!), 0);
  t.same(woke, ['b', 'a'], 'PUT count wakes the waiters of that area');
  k.ioctl(fds[0]!, 'KCOV_DISABLE', 1, 0);
  t.same(woke, ['b', 'a', 'a'], 'an ioctl wakes the waiters of its fd');
  k.eventsJson(1, { pcs: [3] });
  t.same(woke, ['b', 'a', 'a'], 'an untraced thread writes nothing and wakes nobody');
  for (const f of off) f();
  k.eventsJson(2, { pcs: [1] });
  t.same(woke.length, 3, 'unsubscribed waiters stay asleep');
});

t.test('a kernel-wide watcher sees every change; a remote waiter only its remote', async (t) => {
  const { k, fds } = setup();
  let any = 0;
  let remote = 0;
  const offAny = k.watch(() => any++);
  const offRemote = k.changes.watchOn([remoteKey('0x100000000000001')], () => remote++);
  k.eventsJson(2, { pcs: [1] });
  k.close(fds[0]!);
  t.equal(any, 2);
  t.equal(remote, 0);
  k.changes.remoteChanged('0x100000000000001');
  t.equal(remote, 1);
  offAny();
  offRemote();
});

t.test('each waiter is charged to the budget while it waits; past the budget it is ENOMEM', async (t) => {
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 2 * COST.waiter });
  const k = e.kernel('default');
  const a = k.changes.watchOn([fdKey(3)], () => {});
  const b = k.changes.watchOn([fdKey(3)], () => {});
  t.equal(e.budget.breakdown().waiters, 2 * COST.waiter);
  t.equal(errnoOf(() => k.changes.watchOn([fdKey(3)], () => {})), 'ENOMEM');
  a();
  a();
  t.equal(e.budget.breakdown().waiters, COST.waiter, 'an unsubscribe releases once');
  b();
  t.equal(e.budget.used, 0);
  t.same(e.checkInvariants(), []);
});
