/**
 * The C runtime (examples/c): the demo, built with
 * gcc -fsanitize-coverage=trace-pc,trace-cmp and libkcovd_rt.a, posts to a live
 * kcovd; the records it says it sent (KCOVD_RECORD) must be exactly what the
 * service holds. Also: settings, transports, and what it leaves behind.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { KcovdClient } from '../../src/index.js';
import { runtimeBuild } from '../../scripts/cbuild.js';
import { makeApp } from '../helpers.js';
import { listenApp } from '../live.js';
import { jsonOf, needTool, run } from './chelp.js';

t.setTimeout(240_000);

/** KCOVD_RECORD lines grouped by tid: "pc <tid> <pc>" or "cmp <tid> <type> <arg1> <arg2> <pc>". */
function recorded(file: string, kind: 'pc' | 'cmp'): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [k, tid, ...rest] = line.split(' ');
    if (k !== kind) continue;
    const list = by.get(Number(tid)) ?? [];
    list.push(rest.join(' '));
    by.set(Number(tid), list);
  }
  return by;
}

t.test('C runtime', { skip: needTool('gcc') || needTool('make') }, async (t) => {
  const dir = runtimeBuild(['all']);
  const demo = join(dir, 'demo');
  const scratch = mkdtempSync(join(tmpdir(), 'kcovd-c-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  // The runtime's own object must not be instrumented, or its hooks would recurse.
  const rtSyms = execFileSync('nm', [join(dir, 'libkcovd_rt.a')]).toString();
  t.notMatch(rtSyms, /\bU __sanitizer_cov_trace_pc\b/, 'libkcovd_rt.a calls no coverage hook');

  const { url } = await listenApp(t);
  const client = new KcovdClient({ url, token: '' });
  t.teardown(() => client.close());
  const demoRun = (env: Record<string, string>, args = ['150']) => run(demo, args, { KCOVD_URL: url, ...env }, 30_000);

  await t.test('PC mode: each thread opens, sizes and enables its own descriptor', async (t) => {
    const rec = join(scratch, 'pc.txt');
    const r = await demoRun({ KCOVD_ENABLE: 'pc', KCOVD_RECORD: rec });
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stderr, '', 'no runtime warnings');
    const sent = recorded(rec, 'pc');
    const k = client.kernel('default');
    const ds = await k.descriptors();
    t.equal(ds.length, 2, 'one descriptor per thread');
    t.equal(sent.size, 2, 'two tids posted');
    for (const d of ds) {
      t.equal(d.owner, null, 'disabled when its thread exited (the dialect exit hook)');
      t.equal(d.words, 1 << 21, 'the default area: 2 Mi words');
    }
    // fds are handed out in order of set-up; match them to tids by content.
    const held = await Promise.all(ds.map(async (d) => (await k.snapshot(d.fd)).pcs()));
    const lists = [...sent.values()];
    for (const h of held) {
      t.ok(h.length > 100);
      t.ok(lists.some((l) => JSON.stringify(l) === JSON.stringify(h)), `fd holds exactly the ${h.length} PCs one thread sent, in order`);
    }
    t.same(await k.threads(), [], 'both threads ended in the service');
  });

  await t.test('CMP mode: trace_cmp, const_cmp and switch records', async (t) => {
    await client.createKernel({ name: 'cmpk', dialect: 'linux' });
    const rec = join(scratch, 'cmp.txt');
    const r = await demoRun({ KCOVD_ENABLE: 'cmp', KCOVD_RECORD: rec, KCOVD_KERNEL: 'cmpk' });
    t.equal(r.code, 0, r.stderr);
    const sent = recorded(rec, 'cmp');
    t.equal(recorded(rec, 'pc').size, 0, 'no PCs posted in CMP mode');
    const k = client.kernel('cmpk');
    const ds = await k.descriptors();
    t.equal(ds.length, 2);
    const lists = [...sent.values()].map((l) => JSON.stringify(l));
    const types = new Set<number>();
    for (const d of ds) {
      const snap = await k.snapshot(d.fd);
      const held = snap.text('cmp').trim().split('\n');
      t.ok(lists.includes(JSON.stringify(held)), `fd ${d.fd} holds exactly the comparisons one thread sent`);
      for (const c of snap.cmps()) types.add(c.type);
    }
    t.ok([...types].some((x) => (x & 1) === 1), 'const comparisons (KCOV_CMP_CONST) seen');
    t.ok([...types].some((x) => (x & 1) === 0), 'non-const comparisons seen');
  });

  await t.test('KCOVD_TID: the main thread posts as it, other threads as tids of their own', async (t) => {
    await client.createKernel({ name: 'ext', dialect: 'linux' });
    const k = client.kernel('ext');
    const { fd } = await k.open(4242);
    await k.ioctl(fd, 'KCOV_INIT_TRACE', 4242, 65536);
    await k.ioctl(fd, 'KCOV_ENABLE', 4242, 'pc');
    const rec = join(scratch, 'ext.txt');
    const r = await demoRun({ KCOVD_TID: '4242', KCOVD_RECORD: rec, KCOVD_KERNEL: 'ext' });
    t.equal(r.code, 0, r.stderr);
    const sent = recorded(rec, 'pc');
    t.same([...sent.keys()].sort(), [4242, 4243], 'two threads, two tids');
    const held = (await k.snapshot(fd)).pcs();
    t.same(held, sent.get(4242), 'the enabled descriptor holds the main thread\'s PCs, in order');
    t.equal((await k.descriptors()).length, 1, 'the runtime opened nothing itself');
    t.match(r.stderr, /ignored by the service/, 'records nobody traced are reported (the other tid, and the CMP records)');
  });

  for (const dialect of ['openbsd', 'netbsd', 'freebsd'] as const) {
    await t.test(`${dialect} kernel: its own ioctls, an area within its limit`, async (t) => {
      const name = `bsd-${dialect}`;
      const made = await jsonOf({ url }, 'POST', '/v1/kernels', { name, dialect });
      const r = await demoRun({ KCOVD_ENABLE: 'pc', KCOVD_KERNEL: name });
      t.equal(r.code, 0);
      t.equal(r.stderr, '', 'no warnings');
      const ds = await client.kernel(name).descriptors();
      t.equal(ds.length, 2);
      for (const d of ds) {
        t.equal(d.words, Math.min(1 << 21, made.max_entries), 'the default size, cut to the kernel\'s largest');
        t.ok((d.count ?? 0) > 100, 'holding the thread\'s PCs');
      }
    });
  }

  await t.test('a tid reused by the next run starts clean (no EBUSY)', async (t) => {
    await client.createKernel({ name: 'reuse', dialect: 'linux' });
    for (let i = 0; i < 3; i++) {
      const r = await demoRun({ KCOVD_TID: '7000', KCOVD_ENABLE: 'pc', KCOVD_KERNEL: 'reuse' });
      t.equal(r.code, 0);
      t.equal(r.stderr, '', `run ${i}: no warnings`);
    }
    const ds = await client.kernel('reuse').descriptors();
    t.equal(ds.length, 6, 'each run opened its own two, left readable');
    t.ok(ds.every((d) => (d.count ?? 0) > 100), 'every one holds its run');
  });

  await t.test('KCOVD_CLOSE=1 closes what it opened: many runs never reach the descriptor cap', async (t) => {
    const small = await listenApp(t, { KCOV_MAX_DESCRIPTORS: '4' });
    for (let i = 0; i < 8; i++) {
      const r = await run(demo, ['50'], { KCOVD_URL: small.url, KCOVD_ENABLE: 'pc', KCOVD_CLOSE: '1' });
      t.equal(r.code, 0);
      t.equal(r.stderr, '', `run ${i}: no 507`);
    }
    t.equal((await jsonOf({ url: small.url }, 'GET', '/v1/kernels/default/descriptors')).descriptors.length, 0);
    for (let i = 0; i < 2; i++) t.equal((await run(demo, ['50'], { KCOVD_URL: small.url, KCOVD_ENABLE: 'pc' })).code, 0);
    const r = await run(demo, ['50'], { KCOVD_URL: small.url, KCOVD_ENABLE: 'pc' });
    t.equal(r.code, 0, 'a program never fails because of the runtime');
    t.match(r.stderr, /open: HTTP 507/, 'without KCOVD_CLOSE the cap is reached, and said');
    t.match(r.stderr, /[1-9]\d* dropped by the runtime/, 'and the records that had nowhere to go are counted');
  });

  await t.test('an area that fills: a warning the first time, the drops counted as the service reported them', async (t) => {
    await client.createKernel({ name: 'tiny', dialect: 'linux' });
    const r = await demoRun({ KCOVD_ENABLE: 'pc', KCOVD_KERNEL: 'tiny', KCOVD_WORDS: '64' });
    t.equal(r.code, 0);
    const warnings = r.stderr.match(/the area of fd \d+ is full/g) ?? [];
    t.equal(warnings.length, 2, 'once per area (two threads)');
    const m = /(\d+) records seen, (\d+) sent, (\d+) stored, (\d+) dropped by full areas/.exec(r.stderr);
    t.ok(m !== null, r.stderr);
    t.equal(Number(m![3]), 2 * 63, 'each area stored what it holds (64 words: 63 PCs)');
    t.equal(Number(m![3]) + Number(m![4]), Number(m![2]), 'the rest is counted as dropped by the areas');
  });

  await t.test('a bad setting is refused with a clear message; the program runs untraced', async (t) => {
    for (const [name, value] of [['KCOVD_WORDS', '12abc'], ['KCOVD_TID', '-3'], ['KCOVD_ENABLE', 'pcs'], ['KCOVD_URL', 'http://[::1:80'], ['KCOVD_BATCH', '99999999999']]) {
      const r = await demoRun({ [name]: value, KCOVD_ENABLE: name === 'KCOVD_ENABLE' ? value : 'pc', KCOVD_KERNEL: 'bad' });
      t.equal(r.code, 0, `${name}=${value}: the program still runs`);
      t.match(r.stderr, new RegExp(`kcovd_rt: ${name}=`), `${name}=${value}: ${r.stderr.trim()}`);
    }
  });

  await t.test('transports: IPv6 and a Unix socket', async (t) => {
    const app6 = await makeApp(t);
    let v6 = true;
    try {
      await app6.listen({ port: 0, host: '::1' });
    } catch {
      v6 = false;
    }
    if (v6) {
      const port = (app6.server.address() as { port: number }).port;
      const r = await run(demo, ['50'], { KCOVD_URL: `http://[::1]:${port}`, KCOVD_ENABLE: 'pc', KCOVD_VERBOSE: '1' });
      t.equal(r.code, 0);
      t.match(r.stderr, / 0 dropped by the runtime.* 0 errors/, `[::1]: ${r.stderr.trim()}`);
      t.equal((await jsonOf({ url: `http://[::1]:${port}` }, 'GET', '/v1/kernels/default/descriptors')).descriptors.length, 2);
    } else {
      t.comment('no IPv6 loopback here');
    }
    const appU = await makeApp(t);
    const sock = join(scratch, 'kcovd.sock');
    await appU.listen({ path: sock });
    const r = await run(demo, ['50'], { KCOVD_URL: `unix:${sock}`, KCOVD_ENABLE: 'pc', KCOVD_VERBOSE: '1' });
    t.equal(r.code, 0);
    t.match(r.stderr, / 0 dropped by the runtime.* 0 errors/, `unix: ${r.stderr.trim()}`);
    const ds = (await jsonOf({ socketPath: sock }, 'GET', '/v1/kernels/default/descriptors')).descriptors;
    t.equal(ds.length, 2);
  });
});
