/** Linux remote coverage over HTTP: the routes around kernel/kcov.c's remote code. */
import t from 'tap';
import { Client, expectProblem, json, makeApp } from '#test/helpers.js';

const USB1 = '0x0100000000000001';
const COMMON = '0x000000000000002a';

async function setup(t: Parameters<typeof makeApp>[0], env: Record<string, string> = {}) {
  const app = await makeApp(t, env);
  const c = new Client(app);
  return { app, c };
}

t.test('KCOV_REMOTE_ENABLE over HTTP: request number, errno statuses, descriptor view', async (t) => {
  const { c } = await setup(t);
  const fd = await c.open();
  expectProblem(t, await c.ioctl(fd, '0x40186366', 1, { handles: [USB1] }), 400, 'EINVAL'); // no KCOV_INIT_TRACE
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  expectProblem(t, await c.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { handles: [COMMON] }), 400, 'EINVAL'); // kcov_check_handle
  expectProblem(t, await c.ioctl(fd, 'KCOV_REMOTE_ENABLE', 1, { handles: [USB1], bogus: 1 }), 400, 'EINVAL');
  const ok = await c.ok(fd, '0x40186366', 1, { trace_mode: 'pc', area_size: 32, handles: [USB1], common_handle: COMMON });
  t.equal(ok.descriptor.state, 'TRACE_PC');
  t.same(ok.descriptor.remote, { area_size: 32, handles: ['0x100000000000001'], common_handle: '0x2a' });
  const fd2 = await c.open();
  await c.ok(fd2, 'KCOV_INIT_TRACE', 2, 64);
  expectProblem(t, await c.ioctl(fd2, 'KCOV_REMOTE_ENABLE', 2, { handles: [USB1] }), 409, 'EEXIST');
  expectProblem(t, await c.ioctl(fd2, 'KCOV_REMOTE_ENABLE', 1, { handles: ['0x0100000000000002'] }), 409, 'EBUSY');
  const th = json(await c.app.inject({ method: 'GET', url: `${c.base}/threads/1` }));
  t.equal(th.mode, 'REMOTE');
  t.equal(th.handle, '0x2a');
});

t.test('common handle: a forked child inherits it and its section lands in the descriptor', async (t) => {
  const { c, app } = await setup(t);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 0, area_size: 32, common_handle: COMMON });
  const child = await c.thread(2, { pid: 1, parent: 1 });
  t.equal(child.statusCode, 201);
  t.equal(json(child).handle, '0x2a', 'kcov_task_init: t->kcov_handle = current->kcov_handle');
  const enter = await app.inject({ method: 'POST', url: `${c.base}/threads/2/remote`, payload: { handle: json(child).handle } });
  t.equal(enter.statusCode, 200);
  t.same(json(enter).section, { remote: '0x2a', context: 'task' });
  t.equal(json(enter).mode, 'TRACE_PC');
  const remotes = json(await app.inject({ method: 'GET', url: `${c.base}/remotes` }));
  t.same(remotes.remotes, [{ handle: '0x2a', common: true, fd, owner: 1, mode: 'pc', area_size: 32, sections: [{ context: 'task', tid: 2 }] }]);
  const ev = json(await c.events(2, { pcs: ['0x10', '0x20'] }));
  t.equal(ev.count, 2, 'the section area\'s count while open');
  t.equal((await c.cover(fd)).count, 0, 'nothing in the descriptor before kcov_remote_stop');
  const leave = await app.inject({ method: 'DELETE', url: `${c.base}/threads/2/remote` });
  t.equal(json(leave).section, null);
  t.same((await c.cover(fd)).pcs, ['0x10', '0x20']);
});

t.test('one-shot sections: count, moved (clamped), discarded and unregistered', async (t) => {
  const { c, app } = await setup(t);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 4); // 3 PCs
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 16, handles: [USB1] });
  const url = `${c.base}/remotes/${USB1}/events?context=task&tid=7`;
  let r = json(await app.inject({ method: 'POST', url, payload: { pcs: [1, 2] } }));
  t.same(r, { accepted: 2, dropped: 0, ignored: 0, count: 2, moved: 2 });
  r = json(await app.inject({ method: 'POST', url, payload: { pcs: [3, 4] } }));
  t.same(r, { accepted: 2, dropped: 0, ignored: 0, count: 2, moved: 1 }, 'kcov_move_area copies what fits');
  r = json(await app.inject({ method: 'POST', url, payload: {} }));
  t.same(r, { accepted: 0, dropped: 0, ignored: 0, count: 0, moved: 0 }, 'an empty section still runs');
  r = json(await app.inject({ method: 'POST', url: `${c.base}/remotes/0x0100000000000009/events?tid=7`, payload: { pcs: [5] } }));
  t.same(r, { accepted: 0, dropped: 0, ignored: 1, count: null }, 'unregistered handle: no section');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/0x0300000000000001/events?tid=7`, payload: { pcs: [5] } }), 400, 'EINVAL');
  expectProblem(t, await app.inject({ method: 'PUT', url: `${c.base}/remotes/${USB1}` }), 501, 'EOPNOTSUPP');
  t.same((await c.cover(fd)).pcs, ['0x1', '0x2', '0x3']);
});

t.test('section discarded after KCOV_DISABLE over HTTP', async (t) => {
  const { c, app } = await setup(t);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 16, handles: [USB1] });
  await app.inject({ method: 'POST', url: `${c.base}/threads/3/remote`, payload: { handle: USB1 } });
  await c.events(3, { pcs: [1] });
  await c.ok(fd, 'KCOV_DISABLE', 1, 0);
  t.same(json(await app.inject({ method: 'GET', url: `${c.base}/remotes` })).remotes, [], 'kcov_remote_reset');
  await app.inject({ method: 'DELETE', url: `${c.base}/threads/3/remote` });
  t.equal((await c.cover(fd)).count, 0);
});

t.test('softirq one-shot on a CPU, interrupting a traced thread; GET /cpus', async (t) => {
  const { c, app } = await setup(t, { KCOV_CPU_AREA_WORDS: '128' });
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 'cmp', area_size: 16, handles: [USB1] });
  const own = await c.open();
  await c.ok(own, 'KCOV_INIT_TRACE', 5, 64);
  await c.ok(own, 'KCOV_ENABLE', 5, 1);
  const cmp = { size: 4, arg1: 1, arg2: 2, pc: '0x99' };
  const r = json(await app.inject({ method: 'POST', url: `${c.base}/remotes/${USB1}/events?context=softirq&cpu=1&tid=5`, payload: { cmps: [cmp] } }));
  t.same(r, { accepted: 1, dropped: 0, ignored: 0, count: 1, moved: 1 });
  t.equal((await c.cover(fd)).cmps[0].pc, '0x99');
  t.equal((await c.cover(own)).count, 0, 'the interrupted thread\'s own area untouched');
  t.equal(json(await c.events(5, { cmps: [cmp] })).count, 1, 'and its tracing restored');
  const cpu = json(await app.inject({ method: 'GET', url: `${c.base}/cpus/1` }));
  t.same(cpu, { cpu: 1, words: 128, count: 1, section: null });
  const cpus = json(await app.inject({ method: 'GET', url: `${c.base}/cpus` }));
  t.equal(cpus.cpus[0].words, null, 'cpu 0 never used');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/${USB1}/events?context=softirq`, payload: {} }), 400, 'EINVAL');
});

t.test('KCOV_MEMORY_LIMIT: a section area past it is 507 ENOMEM and changes nothing', async (t) => {
  const { c, app } = await setup(t, { KCOV_MEMORY_LIMIT: '64K' });
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { area_size: 1 << 20, handles: [USB1] });
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/2/remote`, payload: { handle: USB1 } }), 507, 'ENOMEM');
  expectProblem(t, await app.inject({ method: 'GET', url: `${c.base}/threads/2` }), 404, 'ESRCH'); // the failed request made no thread
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/${USB1}/events?tid=2`, payload: { pcs: [1] } }), 507, 'ENOMEM');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/remotes/${USB1}/events?context=softirq&cpu=0`, payload: { pcs: [1] } }), 507, 'ENOMEM');
  t.equal(json(await app.inject({ method: 'GET', url: `${c.base}/cpus/0` })).words, null);
});

t.test('KCOV_UNIQUE_ENABLE and KCOV_RESET_TRACE over HTTP', async (t) => {
  const { c } = await setup(t);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 16);
  expectProblem(t, await c.ioctl(fd, '0x6368', 1, 0), 400, 'EINVAL');
  await c.ok(fd, '0x40086367', 1, 2);
  const r = json(await c.events(1, { pcs: [1, 1, 2] }));
  t.same(r, { accepted: 2, dropped: 0, ignored: 1, count: 2 });
  await c.ok(fd, 'KCOV_RESET_TRACE', 1, 0);
  t.equal((await c.cover(fd)).count, 0);
  t.equal(json(await c.events(1, { pcs: [1] })).accepted, 1, 'bitmap zeroed too');
});
