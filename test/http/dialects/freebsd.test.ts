/**
 * FreeBSD kernels over HTTP. Most tests translate an ATF case of FreeBSD's
 * tests/sys/kern/kcov.c (named in the test) into requests; the others check a
 * sys/kern/kern_kcov.c rule through the routes.
 *
 * ATF's page_size is 4096 here: common_head sizes the buffer with
 * KIOSETBUFSIZE page_size / KCOV_ENTRY_SIZE = 512 entries.
 */
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { Client, cmps, expectProblem, json, makeApp, pcs } from '#test/helpers.js';

const MAIN = 100;
const PAGE_ENTRIES = 4096 / 8;

async function fbsd(t: Parameters<typeof makeApp>[0], body: Record<string, unknown> = {}, env: Record<string, string> = {}):
  Promise<{ app: FastifyInstance; c: Client }> {
  const app = await makeApp(t, env);
  const res = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'fbsd', dialect: 'freebsd', ...body } });
  if (res.statusCode !== 201) throw new Error(`create: ${res.statusCode} ${res.body}`);
  return { app, c: new Client(app, 'fbsd') };
}

/** ATF common_head: open, KIOSETBUFSIZE(page_size / 8), and the mapping exists. */
async function commonHead(c: Client, tid = MAIN): Promise<number> {
  const fd = await c.open(tid);
  await c.ok(fd, 'KIOSETBUFSIZE', tid, PAGE_ENTRIES);
  return fd;
}

async function state(c: Client, fd: number): Promise<any> {
  const res = await c.descriptor(fd);
  return json(res);
}

t.test('POST /v1/kernels: a freebsd kernel reports kern.kcov.max_entries (default 1 << 24, settable above or below)', async (t) => {
  const { app } = await fbsd(t);
  let res = await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' });
  t.equal(json(res).dialect, 'freebsd');
  t.equal(json(res).max_entries, 1 << 24);
  t.equal(json(res).min_entries, 2);
  res = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'big', dialect: 'freebsd', max_entries: (1 << 24) + 512 } });
  t.equal(res.statusCode, 201);
  t.equal(json(res).max_entries, (1 << 24) + 512);
  res = await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'small', dialect: 'freebsd', max_entries: 1024 } });
  t.equal(json(res).max_entries, 1024);
  const small = new Client(app, 'small');
  const fd = await small.open(MAIN);
  expectProblem(t, await small.ioctl(fd, 'KIOSETBUFSIZE', MAIN, 1025), 400, 'EINVAL');
  await small.ok(fd, 'KIOSETBUFSIZE', MAIN, 1024);
});

t.test('KCOV_DIALECT=freebsd makes the default kernel a FreeBSD one', async (t) => {
  const app = await makeApp(t, { KCOV_DIALECT: 'freebsd' });
  const c = new Client(app);
  const fd = await c.open(MAIN);
  expectProblem(t, await c.ioctl(fd, 'KCOV_INIT_TRACE', MAIN, 64), 400, 'EINVAL');
  await c.ok(fd, 'KIOSETBUFSIZE', MAIN, 64);
});

t.test('ATF kcov_bufsize: KIOSETBUFSIZE 0 and 1 are EINVAL, 2 works, 2 again is EBUSY (kcov_alloc, kcov_ioctl)', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  const bad0 = await c.ioctl(fd, 'KIOSETBUFSIZE', MAIN, 0);
  expectProblem(t, bad0, 400, 'EINVAL');
  t.equal(json(bad0).code, 22, 'FreeBSD EINVAL is 22');
  expectProblem(t, await c.ioctl(fd, 'KIOSETBUFSIZE', MAIN, 1), 400, 'EINVAL');
  const ok = await c.ok(fd, 'KIOSETBUFSIZE', MAIN, 2);
  t.equal(ok.ret, 0);
  t.equal(ok.descriptor.state, 'READY');
  t.equal(ok.descriptor.words, 2);
  const again = await c.ioctl(fd, 'KIOSETBUFSIZE', MAIN, 2);
  expectProblem(t, again, 409, 'EBUSY');
  t.equal(json(again).code, 16);
});

t.test('ATF kcov_mmap: no mapping before the buffer (kcov_mmap_single EINVAL); all mappings alias one buffer', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  expectProblem(t, await c.coverage(fd, 'application/octet-stream'), 400, 'EINVAL');
  expectProblem(t, await c.app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 1 } }), 400, 'EINVAL');
  const sized = await c.ok(fd, 'KIOSETBUFSIZE', MAIN, 2 * PAGE_ENTRIES);
  t.equal(sized.descriptor.bufsize, 8192);
  t.equal(sized.descriptor.mmappable, true, 'mmap(2 * page_size) is the only length that works');
  // data1: write the count word, data2: read it back.
  const put = await c.app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 0x123456789abcd } });
  t.equal(put.statusCode, 200);
  const bin = await c.coverage(fd, 'application/octet-stream');
  t.equal(bin.statusCode, 200);
  t.equal(bin.rawPayload.length, 2 * PAGE_ENTRIES * 8, 'the whole area: entries * 8 bytes');
  t.equal(bin.rawPayload.readBigUInt64LE(0), 0x123456789abcdn);
  t.equal((await c.cover(fd)).count, 0x123456789abcd);
});

t.test('ATF kcov_mmap_no_munmap and _no_close: a mapped READY fd closes cleanly, or goes with the kernel', async (t) => {
  const { app, c } = await fbsd(t);
  const a = await commonHead(c);
  t.equal((await c.coverage(a, 'application/octet-stream')).statusCode, 200);
  t.equal((await c.close(a)).statusCode, 204);
  expectProblem(t, await c.descriptor(a), 404, 'EBADF');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' })).memory, 0, 'kcov_mmap_cleanup freed it');
  const b = await commonHead(c);
  t.equal((await c.coverage(b, 'application/octet-stream')).statusCode, 200);
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/kernels/fbsd' })).statusCode, 204);
});

t.test('ATF kcov_enable: the whole sequence of kcov_ioctl checks', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', MAIN, 0), 409, 'EBUSY');       // no buffer: OPEN != READY
  await c.ok(fd, 'KIOSETBUFSIZE', MAIN, PAGE_ENTRIES);
  expectProblem(t, await c.ioctl(fd, 'KIODISABLE', MAIN, 0), 400, 'EINVAL');     // "We need to enable before disable"
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', MAIN, -1), 400, 'EINVAL');     // bad mode
  const on = await c.ok(fd, 'KIOENABLE', MAIN, 0);                               // KCOV_MODE_TRACE_PC
  t.same([on.descriptor.state, on.descriptor.mode, on.descriptor.owner], ['RUNNING', 'pc', MAIN]);
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', MAIN, 0), 409, 'EBUSY');       // already RUNNING
  expectProblem(t, await c.ioctl(fd, 'KIOENABLE', MAIN, 1), 409, 'EBUSY');       // also with CMP
  await c.ok(fd, 'KIODISABLE', MAIN, 0);
  expectProblem(t, await c.ioctl(fd, 'KIODISABLE', MAIN, 0), 400, 'EINVAL');     // "Disable should only be called once"
  const cmp = await c.ok(fd, 'KIOENABLE', MAIN, 1);                              // "Re-enabling should also work"
  t.equal(cmp.descriptor.mode, 'cmp');
  const off = await c.ok(fd, 'KIODISABLE', MAIN, 0);
  t.same([off.descriptor.state, off.descriptor.mode, off.descriptor.owner], ['READY', null, null]);
});

t.test('ATF kcov_enable_no_disable: DELETE of a RUNNING fd is 204, the fd is gone, the buffer waits for the thread', async (t) => {
  const { app, c } = await fbsd(t);
  const fd = await commonHead(c);
  await c.ok(fd, 'KIOENABLE', MAIN, 'pc');
  // kcov_close returns EBUSY for a RUNNING info, but close(2) has released the fd.
  t.equal((await c.close(fd)).statusCode, 204);
  expectProblem(t, await c.descriptor(fd), 404, 'EBADF');
  expectProblem(t, await c.ioctl(fd, 'KIODISABLE', MAIN), 404, 'EBADF');
  expectProblem(t, await c.close(fd), 404, 'EBADF');
  const th = json(await app.inject({ method: 'GET', url: `${c.base}/threads/${MAIN}` }));
  t.equal(th.fd, fd, 'td_kcov_info still points at the DYING info');
  const ev = json(await c.events(MAIN, { pcs: ['0x1'] }));
  t.equal(ev.accepted, 0, 'DYING records nothing');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' })).memory, PAGE_ENTRIES * 8);
  t.equal((await c.exit(MAIN)).statusCode, 204);
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' })).memory, 0, 'kcov_thread_dtor freed it');
});

t.test('ATF kcov_enable_no_disable_no_close: a kernel with a RUNNING fd is torn down whole', async (t) => {
  const { app, c } = await fbsd(t);
  const fd = await commonHead(c);
  await c.ok(fd, 'KIOENABLE', MAIN, 'pc');
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/kernels/fbsd' })).statusCode, 204);
  expectProblem(t, await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' }), 404, 'ENOENT');
});

t.test('ATF kcov_mmap_enable_thread_close: another thread closes the fd a thread traces; the tracer\'s exit frees it', async (t) => {
  const { app, c } = await fbsd(t);
  const T = 7;
  const fd = await commonHead(c, T);
  await c.ok(fd, 'KIOENABLE', T, 'pc');
  t.equal((await c.close(fd)).statusCode, 204, 'main thread closes');
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' })).memory, PAGE_ENTRIES * 8, 'DYING, held by T');
  t.equal((await c.exit(T)).statusCode, 204);
  t.equal(json(await app.inject({ method: 'GET', url: '/v1/kernels/fbsd' })).memory, 0);
});

for (const mode of ['pc', 'cmp'] as const) {
  t.test(`ATF kcov_basic_${mode}: records appear after a syscall of the enabled thread`, async (t) => {
    const { app, c } = await fbsd(t);
    const fd = await commonHead(c);
    await c.ok(fd, 'KIOENABLE', MAIN, mode === 'pc' ? 0 : 1);
    const zero = await app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 0 } });
    t.equal(zero.statusCode, 200);
    // sleep(0), as the thread's instrumentation would report it.
    const res = mode === 'pc'
      ? await c.binary(MAIN, pcs(0x80a01234, 0x80a05678))
      : await c.binary(MAIN, cmps([7, 0, 1, 0x80a01234]), 'cmp');
    t.equal(res.statusCode, 200);
    const cov = await c.cover(fd);
    t.not(cov.count, 0, 'No records found');
    t.equal(cov.mode, mode);
    if (mode === 'pc') t.same(cov.pcs, ['0x80a01234', '0x80a05678']);
    else t.match(cov.cmps[0], { type: 7, size: 8, const: true, arg1: '0x0', arg2: '0x1', pc: '0x80a01234' });
    await c.ok(fd, 'KIODISABLE', MAIN, 0);
  });

  t.test(`ATF kcov_thread_${mode}: another thread's syscalls are not recorded`, async (t) => {
    const { c } = await fbsd(t);
    const fd = await commonHead(c);
    await c.ok(fd, 'KIOENABLE', MAIN, mode);
    const res = mode === 'pc' ? await c.binary(MAIN + 1, pcs(1, 2)) : await c.binary(MAIN + 1, cmps([1, 2, 3, 4]), 'cmp');
    t.equal(json(res).accepted, 0);
    t.equal((await c.cover(fd)).count, 0, 'Records changed in blocked thread');
    await c.ok(fd, 'KIODISABLE', MAIN, 0);
  });
}

t.test('ATF kcov_enable_multi_thread: a thread exits without KIODISABLE, the next thread enables the same fd', async (t) => {
  const { c } = await fbsd(t);
  const fd = await commonHead(c);
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  await c.events(1, { pcs: ['0x10'] });
  t.not((await c.cover(fd)).count, 0);
  t.equal((await c.exit(1)).statusCode, 204);
  const after = await state(c, fd);
  t.same([after.state, after.owner, after.mode], ['READY', null, null], 'kcov_thread_dtor: RUNNING -> READY');
  await c.app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 0 } });
  await c.ok(fd, 'KIOENABLE', 2, 'cmp');
  await c.events(2, { cmps: [{ size: 4, const: false, arg1: 1, arg2: 2, pc: '0x20' }] });
  const cov = await c.cover(fd);
  t.equal(cov.count, 1);
  t.equal(cov.mode, 'cmp');
});

t.test('kcov_ioctl KIOENABLE: a thread that already traces another fd is EINVAL, checked before the mode', async (t) => {
  const { c } = await fbsd(t);
  const a = await commonHead(c);
  const b = await commonHead(c);
  await c.ok(a, 'KIOENABLE', MAIN, 'pc');
  expectProblem(t, await c.ioctl(b, 'KIOENABLE', MAIN, 'cmp'), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(b, 'KIOENABLE', MAIN, 9), 400, 'EINVAL');
  t.equal((await state(c, b)).state, 'READY');
});

t.test('kcov_ioctl KIODISABLE from a thread that does not trace the fd is EINVAL and changes nothing', async (t) => {
  const { c } = await fbsd(t);
  const fd = await commonHead(c);
  await c.ok(fd, 'KIOENABLE', MAIN, 'pc');
  expectProblem(t, await c.ioctl(fd, 'KIODISABLE', MAIN + 1), 400, 'EINVAL');
  t.equal((await state(c, fd)).state, 'RUNNING');
});

t.test('kcov_ioctl default: unknown requests are EINVAL by name or number; request numbers work', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  expectProblem(t, await c.ioctl(fd, 'KCOV_ENABLE', MAIN, 0), 400, 'EINVAL');
  expectProblem(t, await c.ioctl(fd, '0x6364', MAIN, 0), 400, 'EINVAL');
  await c.ok(fd, '0x20046304', MAIN, PAGE_ENTRIES);
  await c.ok(fd, String(0x20046302), MAIN, 1);
  await c.ok(fd, '0x20006303', MAIN);
});

t.test('kcov_alloc: kva_alloc failure is ENOMEM (507) and the fd stays OPEN', async (t) => {
  const { c } = await fbsd(t, {}, { KCOV_MEMORY_LIMIT: '4096' });
  const fd = await c.open(MAIN);
  const res = await c.ioctl(fd, 'KIOSETBUFSIZE', MAIN, PAGE_ENTRIES + 1);
  expectProblem(t, res, 507, 'ENOMEM');
  t.equal((await state(c, fd)).state, 'OPEN');
});

t.test('trace_pc capacity over HTTP: `index + 2 > entries` drops, the binary area stays entries * 8 bytes', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  await c.ok(fd, 'KIOSETBUFSIZE', MAIN, 4);
  await c.ok(fd, 'KIOENABLE', MAIN, 'pc');
  const r = json(await c.binary(MAIN, pcs(1, 2, 3, 4, 5)));
  t.same(r, { accepted: 3, dropped: 2, ignored: 0, count: 3 });
  const d = await state(c, fd);
  t.equal(d.capacity, 3);
  t.equal(d.mmappable, false, '4 entries: 32 bytes never match a page-rounded mmap length');
  const bin = await c.coverage(fd, 'application/octet-stream');
  t.equal(bin.rawPayload.length, 32);
});

t.test('trace_cmp capacity over HTTP: `index * 4 + 4 + 1 > entries` drops', async (t) => {
  const { c } = await fbsd(t);
  const fd = await c.open(MAIN);
  await c.ok(fd, 'KIOSETBUFSIZE', MAIN, 12);
  await c.ok(fd, 'KIOENABLE', MAIN, 'cmp');
  const rec: [number, number, number, number] = [6, 1, 2, 3];
  const r = json(await c.binary(MAIN, cmps(rec, rec, rec), 'cmp'));
  t.same(r, { accepted: 2, dropped: 1, ignored: 0, count: 2 }, 'floor((12 - 1) / 4) = 2');
  t.equal((await state(c, fd)).capacity, 2);
});

t.test('no remote coverage on FreeBSD: the remote routes are EOPNOTSUPP (501)', async (t) => {
  const { app, c } = await fbsd(t);
  expectProblem(t, await app.inject({ method: 'PUT', url: `${c.base}/remotes/0:1` }), 501, 'EOPNOTSUPP');
  expectProblem(t, await app.inject({ method: 'POST', url: `${c.base}/threads/${MAIN}/remote`, payload: { subsystem: 0, id: 1 } }), 501, 'EOPNOTSUPP');
  expectProblem(t, await app.inject({ method: 'PUT', url: `${c.base}/threads/${MAIN}/silence` }), 501, 'EOPNOTSUPP');
});
