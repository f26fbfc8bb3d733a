/** The typed client against a live server on an ephemeral port. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { CoverageSnapshot, EventBatcher, KcovdClient, KcovdError, type EventResult, type IoctlCmd } from '../../src/client/index.js';
import { listenApp } from '../live.js';

async function setup(tt: Parameters<typeof listenApp>[0], env: Record<string, string> = {}) {
  const live = await listenApp(tt, env);
  const client = new KcovdClient({ url: live.url, token: '' });
  tt.teardown(() => client.close());
  return { live, client, k: client.kernel('default') };
}

/** A descriptor of `words` words enabled in `mode` for tid. */
async function traced(k: ReturnType<KcovdClient['kernel']>, tid: number, words = 64, mode: 'pc' | 'cmp' = 'pc'): Promise<number> {
  const { fd } = await k.open(tid);
  await k.ioctl(fd, 'KCOV_INIT_TRACE', tid, words);
  await k.ioctl(fd, 'KCOV_ENABLE', tid, mode);
  return fd;
}

t.test('service routes and kernels', async (t) => {
  const { client } = await setup(t);
  t.equal(await client.health(), true);
  t.same(await client.ready(), { ready: true, draining: false });
  const doc = await client.openapi();
  t.equal(doc.openapi, '3.1.0');

  const list = await client.kernels();
  t.same(list.map((k) => k.name), ['default']);
  const made = await client.createKernel({ name: 'k2', dialect: 'linux', ncpus: 3 });
  t.match(made, { name: 'k2', dialect: 'linux', ncpus: 3, descriptors: 0 });
  t.equal((await client.kernel('k2').info()).ncpus, 3);
  t.same((await client.kernels()).map((k) => k.name), ['default', 'k2']);
  await client.deleteKernel('k2');
  const err = await failure(client.getKernel('k2'));
  t.match(err, { status: 404, errno: 'ENOENT', code: 2 });
});

t.test('problems surface as KcovdError with errno, code, status and detail', async (t) => {
  const { k } = await setup(t);
  const { fd } = await k.open(10);
  // Linux kcov_ioctl_locked: KCOV_ENABLE before KCOV_INIT_TRACE is EINVAL.
  const e1 = await failure(k.ioctl(fd, 'KCOV_ENABLE', 10, 'pc'));
  t.ok(e1 instanceof KcovdError);
  t.equal(e1.status, 400);
  t.equal(e1.errno, 'EINVAL');
  t.equal(e1.code, 22);
  t.type(e1.detail, 'string');
  t.ok(e1.detail.length > 0, 'detail carried');
  t.match(e1.message, /EINVAL/);
  // Linux kcov_ioctl: an unknown request is ENOTTY.
  // (A name no dialect has does not type-check: only an untyped caller can send it.)
  const e2 = await failure(k.ioctl(fd, 'KCOV_NOPE' as IoctlCmd, 10));
  t.equal(e2.errno, 'ENOTTY');
  t.equal(e2.code, 25);
  // Validation of the body: 400 EINVAL before the kernel sees it.
  const e3 = await failure(k.events(10, { pcs: ['zzz'] } as never));
  t.equal(e3.status, 400);
  t.equal(e3.errno, 'EINVAL');
});

t.test('descriptors, ioctls, events and the three coverage formats', async (t) => {
  const { k } = await setup(t);
  const fd = await traced(k, 5, 8);
  const d = await k.descriptor(fd);
  t.match(d, { fd, state: 'TRACE_PC', mode: 'pc', words: 8, count: 0, owner: 5 });
  t.same((await k.descriptors()).map((x) => x.fd), [fd]);

  const r1 = await k.events(5, { pcs: ['0xffffffff81000010', 16], sites: ['net/ipv4/tcp.c:123'] });
  t.same(r1, { accepted: 3, dropped: 0, ignored: 0, count: 3 });
  const words = new Uint32Array([0x81000020, 0xffffffff, 0x81000030, 0xffffffff]);
  const r2 = await k.eventsBinary(5, words);
  t.same(r2, { accepted: 2, dropped: 0, ignored: 0, count: 5 });

  const json = await k.coverage(fd);
  t.equal(json.mode, 'pc');
  if (json.mode !== 'pc') throw new Error('pc mode expected');
  t.equal(json.count, 5);
  t.equal(json.pcs[0], '0xffffffff81000010');
  t.equal(json.pcs[1], '0x10');
  t.equal(json.pcs[3], '0xffffffff81000020');

  const snap = await k.snapshot(fd);
  t.ok(snap instanceof CoverageSnapshot);
  t.equal(snap.words, 8);
  t.equal(snap.count, 5);
  t.equal(snap.pcCount, 5);
  t.equal(snap.pc(0), '0xffffffff81000010');
  t.same(snap.pcs(), json.pcs, 'binary view and JSON agree');
  t.same([...snap.records.subarray(6, 8)], [0x81000020, 0xffffffff], 'records are (lo, hi) pairs');
  t.equal(snap.view.getUint32(8 * 4, true), 0x81000020, 'DataView over the same bytes');
  t.equal(snap.text(), json.pcs.join('\n') + '\n');

  const text = await k.coverageText(fd);
  t.equal(text, json.pcs.join('\n') + '\n', 'rawcover text');

  const part = await k.coverageBytes(fd, { range: { start: 8, end: 15 } });
  t.same([...part], [0x10, 0, 0, 0x81, 0xff, 0xff, 0xff, 0xff], 'Range reads part of the area');

  t.same(await k.setCount(fd, 1), { count: 1, words: 8 });
  t.equal((await k.snapshot(fd, { reset: true })).count, 1);
  t.equal((await k.snapshot(fd)).count, 0, 'reset=true zeroed the count after the read');

  // Past capacity (7 records for 8 words) records are dropped; the count stops.
  const full = await k.eventsBinary(5, new Uint32Array(20));
  t.same(full, { accepted: 7, dropped: 3, ignored: 0, count: 7 });

  await k.ioctl(fd, 'KCOV_DISABLE', 5, 0);
  await k.close(fd);
  t.same(await k.descriptors(), []);
});

t.test('cmp records in binary and JSON views', async (t) => {
  const { k } = await setup(t);
  const fd = await traced(k, 6, 32, 'cmp');
  const r = await k.events(6, { cmps: [{ size: 4, const: true, arg1: '0x2a', arg2: 7, pc: '0xffffffff81000100' }] });
  t.equal(r.accepted, 1);
  const snap = await k.snapshot(fd);
  t.equal(snap.cmpCount, 1);
  t.same(snap.cmp(0), { type: 5, size: 4, const: true, arg1: '0x2a', arg2: '0x7', pc: '0xffffffff81000100' });
  const json = await k.coverage(fd);
  if (json.mode !== 'cmp') throw new Error('cmp mode expected');
  t.same(json.cmps[0], snap.cmp(0));
  t.equal(await k.coverageText(fd), '0x5 0x2a 0x7 0xffffffff81000100\n');
});

t.test('threads, remotes and cpus', async (t) => {
  const { k } = await setup(t);
  const made = await k.createThread(20, { pid: 20 });
  t.match(made, { tid: 20, pid: 20, fd: null });
  await k.createThread(21, { pid: 20, parent: 20 });
  t.same((await k.threads()).map((x) => x.tid).sort(), [20, 21]);
  t.equal((await k.thread(21)).pid, 20);

  t.same(await k.remotes(), []);
  const bad = await failure(k.remoteEvents('0x0100000000000001', { context: 'task' }, { pcs: [] }));
  t.match(bad, { status: 400, errno: 'EINVAL' }, 'context=task needs tid');

  const cpus = await k.cpus();
  t.equal(cpus.length, 2);
  t.equal((await k.cpu(1)).cpu, 1);
  const e = await failure(k.cpu(9));
  t.equal(e.errno, 'ENOENT');

  await k.exitThread(21);
  t.same((await k.threads()).map((x) => x.tid), [20]);
});

t.test('remote sections: the request on the wire', async (t) => {
  // A stub server records what the client sends: which dialects run remote
  // sections is the engine's business, the path, query and body are the client's.
  const seen: { method?: string; url?: string; type?: string; auth?: string; body: Buffer }[] = [];
  const stub = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, type: req.headers['content-type'], auth: req.headers.authorization, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"accepted":1,"dropped":0,"ignored":0,"count":1}');
    });
  });
  await new Promise<void>((r) => stub.listen(0, '127.0.0.1', r));
  t.teardown(() => stub.close());
  const client = new KcovdClient({ url: `http://127.0.0.1:${(stub.address() as AddressInfo).port}/prefix/`, token: 's3cret' });
  t.teardown(() => client.close());
  const k = client.kernel('k 1');
  t.same(await k.remoteEvents('0:4242', { context: 'softirq', cpu: 1 }, new Uint32Array([3, 0])), { accepted: 1, dropped: 0, ignored: 0, count: 1 });
  await k.remoteEvents('0x0100000000000001', { context: 'task', tid: 30, kind: 'pc' }, { pcs: ['0x1'] });
  t.equal(seen[0]!.url, '/prefix/v1/kernels/k%201/remotes/0%3A4242/events?context=softirq&cpu=1');
  t.equal(seen[0]!.type, 'application/octet-stream');
  t.equal(seen[0]!.auth, 'Bearer s3cret', 'token sent as a bearer');
  t.same([...seen[0]!.body], [3, 0, 0, 0, 0, 0, 0, 0]);
  t.equal(seen[1]!.url, '/prefix/v1/kernels/k%201/remotes/0x0100000000000001/events?context=task&tid=30&kind=pc');
  t.equal(seen[1]!.type, 'application/json');
  t.same(JSON.parse(seen[1]!.body.toString()), { pcs: ['0x1'] });
});

t.test('batcher: flush by size, by interval, in order, with FNV-1a site ids', async (t) => {
  const { k } = await setup(t);
  const fd = await traced(k, 7, 1024);
  const replies: EventResult[] = [];
  const b = k.batcher(7, { maxRecords: 4, intervalMs: 0, onReply: (r) => replies.push(r) });
  t.ok(b instanceof EventBatcher);
  b.pc('0x100').pc(0x200).pcHalves(0x81000000, 0xffffffff).edge('net/ipv4/tcp.c:123');
  // The fourth record filled the buffer: a batch left without flush().
  t.equal(b.buffered, 0);
  b.pc('0x300');
  t.equal(b.buffered, 1);
  await b.flush();
  t.equal(replies.length, 2, 'one batch by size, one by flush');
  t.match(b.totals, { sent: 5, requests: 2, accepted: 5, dropped: 0, ignored: 0 });

  // The server's JSON `sites` gives the same id as edge(): one FNV-1a implementation.
  await k.events(7, { sites: ['net/ipv4/tcp.c:123'] });
  const pcs = (await k.snapshot(fd)).pcs();
  t.same(pcs.slice(0, 3), ['0x100', '0x200', '0xffffffff81000000']);
  t.equal(pcs[3], pcs[5], 'edge(site) == FNV-1a-64(site) of the server');
  t.equal(pcs[3], '0x' + fnv('net/ipv4/tcp.c:123'));
  t.equal(pcs[4], '0x300');

  // By interval: no flush() call, the timer sends it.
  const timed = k.batcher(7, { maxRecords: 1000, intervalMs: 20 });
  timed.pc(0x400);
  await new Promise((r) => setTimeout(r, 150));
  t.equal(timed.totals.requests, 1, 'sent by the interval');
  await timed.close();
  t.throws(() => timed.pc(1), /closed/);
  t.equal((await k.snapshot(fd)).count, 7);

  // cmp and switch records go as ?kind=cmp and are ignored by a PC-mode descriptor.
  const c = k.batcher(7, { intervalMs: 0 });
  c.cmp(8, 1, 2, 0x10).switch(5, 32, [1, 2, 3], 0x20);
  await c.close();
  t.match(c.totals, { sent: 4, ignored: 4, accepted: 0 });
});

t.test('batcher: a failed background batch rejects the next flush', async (t) => {
  const { k } = await setup(t);
  const errors: unknown[] = [];
  const b = k.batcher(8, { maxRecords: 2, intervalMs: 0, onError: (e) => errors.push(e) });
  // A PC-mode batch to a kernel that does not exist.
  const gone = k.client.kernel('nope').batcher(8, { maxRecords: 1, intervalMs: 0, onError: (e) => errors.push(e) });
  gone.pc(1);
  const err = await failure(gone.flush());
  t.ok(err instanceof KcovdError);
  t.equal(err.errno, 'ENOENT');
  t.equal(errors.length, 1);
  await gone.flush();
  t.pass('the error is reported once');
  t.throws(() => b.pc('not a pc'), TypeError);
  b.pc(1);
  await b.close();
  t.equal(b.totals.ignored, 1, 'no enabled descriptor: ignored, not an error');
});

/** The KcovdError a call fails with (the test fails if it resolves or fails otherwise). */
async function failure(p: Promise<unknown>): Promise<KcovdError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof KcovdError) return e;
    throw e;
  }
  throw new Error('expected a KcovdError');
}

/** Independent FNV-1a-64 (BigInt is fine in a test) to pin the id. */
function fnv(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(s, 'utf8')) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16);
}

t.test('ioctl names are typed per dialect, from the wire table', async (t) => {
  const { url } = await listenApp(t);
  const client = new KcovdClient({ url, connections: 1 });
  t.teardown(() => client.close());
  await client.createKernel({ name: 'obsd', dialect: 'openbsd' });
  const k = client.kernel<'openbsd'>('obsd');
  const { fd } = await k.open(1);
  await k.ioctl(fd, 'KIOSETBUFSIZE', 1, 64);
  // @ts-expect-error KCOV_ENABLE is a Linux name; an OpenBSD kernel's client does not take it
  const wrong = await k.ioctl(fd, 'KCOV_ENABLE', 1, 'pc').then(() => null, (e: unknown) => e as KcovdError);
  t.equal(wrong?.errno, 'ENOTTY', 'and the kernel would refuse it (kcovioctl: unknown request)');
  const r = await k.ioctl(fd, '0x80044b02', 1, 'pc');
  t.equal(r.descriptor.state, 'TRACE', 'a request number in hex is always accepted');
});
