/** Linux ioctls through the routes: status, errno and code of each kernel/kcov.c failure. */
import t from 'tap';
import { Client, expectProblem, json, makeApp } from '#test/helpers.js';

t.test('a syzkaller-style loop: open, init, enable, events, read, reset', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  t.equal(fd, 3);
  const init = await c.ok(fd, 'KCOV_INIT_TRACE', 100, 64);
  t.same(init.descriptor, {
    fd, state: 'INIT', mode: null, words: 64, count: 0, capacity: 63, owner: null, closed: false,
    remote: null, sequence: 1, bitmap_words: 0, // kcov_open: kcov->sequence = 1
  });
  const en = await c.ok(fd, 'KCOV_ENABLE', 100, 0);
  t.equal(en.ret, 0);
  t.equal(en.descriptor.state, 'TRACE_PC');
  t.equal(en.descriptor.owner, 100);
  const ev = await c.events(100, { pcs: ['0xffffffff81000010', '0xffffffff81000020'] });
  t.same(json(ev), { accepted: 2, dropped: 0, ignored: 0, count: 2 });
  const cov = await c.cover(fd);
  t.same(cov, { mode: 'pc', count: 2, words: 64, pcs: ['0xffffffff81000010', '0xffffffff81000020'] });
  const reset = await c.coverage(fd, 'application/json', '?reset=true');
  t.equal(json(reset).count, 2, 'reset returns what was there');
  t.equal((await c.cover(fd)).count, 0, 'and zeroes the count');
  const thr = await c.app.inject({ url: '/v1/kernels/default/threads/100' });
  t.same(json(thr), { tid: 100, pid: 100, fd, handle: null, section: null, silenced: false, mode: 'TRACE_PC' });
});

t.test('every Linux errno path answers with the contract status and the Linux errno number', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  // kcov_ioctl: size < 2 || size > INT_MAX / sizeof(unsigned long)
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 1), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 268435456), 400, 'EINVAL');
  // KCOV_ENABLE: kcov->mode != KCOV_MODE_INIT || !kcov->area
  expectProblem(t, await c.ioctl(fd, 'KCOV_ENABLE', 1, 0), 400, 'EINVAL');
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  // KCOV_INIT_TRACE twice: kcov->mode != KCOV_MODE_DISABLED
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', 1, 16), 409, 'EBUSY');
  // kcov_get_mode
  expectProblem(t, await c.ioctl(fd, 'KCOV_ENABLE', 1, 5), 400, 'EINVAL');
  // KCOV_DISABLE: current->kcov != kcov
  expectProblem(t, await c.ioctl(fd, 'KCOV_DISABLE', 1, 0), 400, 'EINVAL');
  await c.ok(fd, 'KCOV_ENABLE', 1, 'pc');
  // KCOV_DISABLE: unused != 0
  expectProblem(t, await c.ioctl(fd, 'KCOV_DISABLE', 1, 1), 400, 'EINVAL');
  // KCOV_ENABLE: kcov->t != NULL || t->kcov != NULL (second fd, same thread)
  const fd2 = await c.open();
  await c.ok(fd2, 'KCOV_INIT_TRACE', 1, 16);
  const busy = await c.ioctl(fd2, 'KCOV_ENABLE', 1, 0);
  expectProblem(t, busy, 409, 'EBUSY');
  t.equal(json(busy).code, 16, 'Linux EBUSY is 16');
  // Unknown request: kcov_ioctl_locked default -> -ENOTTY
  const notty = await c.ioctl(fd, 'KCOV_NOPE', 1);
  expectProblem(t, notty, 400, 'ENOTTY');
  t.equal(json(notty).code, 25);
  expectProblem(t, await c.ioctl(fd, '0xdeadbeef', 1), 400, 'ENOTTY');
  // Unknown fd and unknown kernel
  expectProblem(t, await c.ioctl(77, 'KCOV_ENABLE', 1, 0), 404, 'EBADF');
  expectProblem(t, await new Client(c.app, 'nope').ioctl(3, 'KCOV_ENABLE', 1, 0), 404, 'ENOENT');
  // Over the memory budget
  const small = new Client(await makeApp(t, { KCOV_MEMORY_LIMIT: '4096' }));
  const sfd = await small.open();
  const nomem = await small.ioctl(sfd, 'KCOV_INIT_TRACE', 1, 1024);
  expectProblem(t, nomem, 507, 'ENOMEM');
  t.equal(json(nomem).code, 12);
});

t.test('ioctl bodies the kernel would never see are 400 EINVAL and change nothing', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  const bad = [
    { arg: 8 },                                  // no tid
    { tid: 'one', arg: 8 },                      // wrong type
    { tid: 1, arg: 8, extra: true },             // unknown field
    { tid: -4, arg: 8 },                         // negative tid
    { tid: 1, arg: [8] },                        // array argument
    { tid: 1, arg: '12abc' },                    // not a number
  ];
  for (const payload of bad) {
    const res = await c.app.inject({ method: 'POST', url: `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, payload });
    expectProblem(t, res, 400, 'EINVAL');
  }
  const raw = await c.app.inject({
    method: 'POST', url: `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`,
    headers: { 'content-type': 'application/json' }, payload: '{"tid": 1, "arg": ',
  });
  expectProblem(t, raw, 400, 'EINVAL');
  t.equal(json(await c.descriptor(fd)).state, 'DISABLED', 'nothing was applied');
});

t.test('close keeps a traced area alive until the thread exits; the fd is then reusable', async (t) => {
  const c = new Client(await makeApp(t));
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 7, 8);
  await c.ok(fd, 'KCOV_ENABLE', 7, 0);
  t.equal((await c.close(fd)).statusCode, 204);
  expectProblem(t, await c.descriptor(fd), 404, 'EBADF');
  expectProblem(t, await c.close(fd), 404, 'EBADF');
  const k1 = json(await c.app.inject({ url: '/v1/kernels/default' }));
  t.equal(k1.memory, 64, 'the closed area still counts');
  t.equal(k1.descriptors, 0, 'but it is no longer an open descriptor');
  t.same(json(await c.events(7, { pcs: [1] })), { accepted: 1, dropped: 0, ignored: 0, count: 1 });
  t.equal((await c.exit(7)).statusCode, 204);
  t.equal(json(await c.app.inject({ url: '/v1/kernels/default' })).memory, 0, 'freed at thread exit');
  expectProblem(t, await c.exit(7), 404, 'ESRCH');

  const fd2 = await c.open();
  await c.ok(fd2, 'KCOV_INIT_TRACE', 8, 8);
  await c.ok(fd2, 'KCOV_ENABLE', 8, 0);
  await c.exit(8);
  const d = json(await c.descriptor(fd2));
  t.equal(d.state, 'INIT', 'exit disabled it');
  t.equal(d.owner, null);
  const again = await c.ok(fd2, 'KCOV_ENABLE', 9, 1);
  t.equal(again.descriptor.state, 'TRACE_CMP', 'another thread reuses the fd');
});

t.test('threads: create with a parent, conflicts, listing', async (t) => {
  const c = new Client(await makeApp(t));
  const made = await c.thread(10);
  t.equal(made.statusCode, 201);
  t.same(json(made), { tid: 10, pid: 10, fd: null, handle: null, section: null, silenced: false, mode: 'DISABLED' });
  t.equal((await c.thread(10)).statusCode, 200, 'PUT again is idempotent');
  expectProblem(t, await c.thread(10, { pid: 3 }), 409, 'EEXIST');
  const child = await c.thread(11, { parent: 10, pid: 10 });
  t.equal(json(child).pid, 10);
  // API.md: a parent not seen yet is created, as the only thread of its own process.
  const orphan = await c.thread(12, { parent: 999 });
  t.equal(orphan.statusCode, 201);
  t.equal(json(orphan).pid, 12, 'a fork without pid: a new process');
  t.equal(json(await c.app.inject({ url: '/v1/kernels/default/threads/999' })).pid, 999);
  expectProblem(t, await c.thread(13, { bogus: 1 }), 400, 'EINVAL');
  const list = json(await c.app.inject({ url: '/v1/kernels/default/threads' }));
  t.same(list.threads.map((x: { tid: number }) => x.tid).sort((a: number, b: number) => a - b), [10, 11, 12, 999]);
  expectProblem(t, await c.app.inject({ url: '/v1/kernels/default/threads/404' }), 404, 'ESRCH');
});

t.test('silence and remote sections are not Linux features the default build fakes', async (t) => {
  const c = new Client(await makeApp(t));
  const s = await c.app.inject({ method: 'PUT', url: '/v1/kernels/default/threads/5/silence' });
  expectProblem(t, s, 501, 'EOPNOTSUPP');
});
