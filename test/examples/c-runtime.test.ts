/**
 * The C runtime (examples/c): a program built with
 * gcc -fsanitize-coverage=trace-pc,trace-cmp posts its records to a live
 * kcovd; the records it says it sent must be exactly what the service holds.
 * Skipped when gcc is not installed.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { KcovdClient } from '../../src/index.js';
import { listenApp } from '../live.js';

const SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'examples', 'c');
const hasGcc = spawnSync('gcc', ['--version'], { stdio: 'ignore' }).status === 0;

/** Build demo in a scratch directory (the Makefile's recipe; make itself when present). */
function build(dir: string): string {
  for (const f of ['kcovd_rt.c', 'kcovd_rt.h', 'demo.c', 'Makefile']) copyFileSync(join(SRC, f), join(dir, f));
  if (spawnSync('make', ['--version'], { stdio: 'ignore' }).status === 0) {
    execFileSync('make', ['-s', '-C', dir, 'demo'], { stdio: ['ignore', 'ignore', 'inherit'] });
  } else {
    const cflags = ['-O1', '-g', '-Wall', '-fno-pie'];
    execFileSync('gcc', [...cflags, '-c', '-o', join(dir, 'kcovd_rt.o'), join(dir, 'kcovd_rt.c')]);
    execFileSync('gcc', [...cflags, '-fsanitize-coverage=trace-pc,trace-cmp', '-c', '-o', join(dir, 'demo.o'), join(dir, 'demo.c')]);
    execFileSync('gcc', ['-no-pie', '-o', join(dir, 'demo'), join(dir, 'demo.o'), join(dir, 'kcovd_rt.o'), '-lpthread']);
  }
  return join(dir, 'demo');
}

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

t.test('C runtime: PCs and comparisons sent are the ones kcovd holds', { skip: hasGcc ? false : 'gcc not installed' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kcovd-c-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const demo = build(dir);
  // The runtime's own object must not be instrumented, or its hooks would recurse.
  const rtSyms = execFileSync('nm', [join(dir, 'kcovd_rt.o')]).toString();
  t.notMatch(rtSyms, /\bU __sanitizer_cov_trace_pc\b/, 'kcovd_rt.o calls no coverage hook');

  const { url } = await listenApp(t);
  const client = new KcovdClient({ url, token: '' });
  t.teardown(() => client.close());
  // Asynchronously: the server runs in this process and must keep answering.
  const run = (env: Record<string, string>) =>
    new Promise<{ status: number | null; stderr: string }>((resolve) => {
      const child = execFile(demo, ['150'], { env: { ...process.env, KCOVD_URL: url, ...env }, timeout: 20000 }, (err, _out, stderr) => {
        resolve({ status: err === null ? 0 : (child.exitCode ?? -1), stderr });
      });
    });

  await t.test('PC mode: each thread opens, sizes and enables its own descriptor', async (t) => {
    const rec = join(dir, 'pc.txt');
    const r = await run({ KCOVD_ENABLE: 'pc', KCOVD_RECORD: rec });
    t.equal(r.status, 0, r.stderr);
    t.equal(r.stderr, '', 'no runtime warnings');
    const sent = recorded(rec, 'pc');
    const k = client.kernel('default');
    const ds = await k.descriptors();
    t.equal(ds.length, 2, 'one descriptor per thread');
    t.same(ds.map((d) => d.owner).sort(), [...sent.keys()].sort(), 'owned by the tids that sent');
    const threads = await k.threads();
    t.equal(new Set(threads.map((x) => x.pid)).size, 1, 'both threads in one process');
    for (const d of ds) {
      const mine = sent.get(d.owner!)!;
      t.ok(mine.length > 100, `tid ${d.owner} sent ${mine.length} PCs`);
      const held = (await k.snapshot(d.fd)).pcs();
      t.same(held, mine, `tid ${d.owner}: the service holds exactly the PCs sent, in order`);
    }
  });

  await t.test('CMP mode: trace_cmp, const_cmp and switch records', async (t) => {
    await client.createKernel({ name: 'cmpk', dialect: 'linux' });
    const rec = join(dir, 'cmp.txt');
    const r = await run({ KCOVD_ENABLE: 'cmp', KCOVD_RECORD: rec, KCOVD_KERNEL: 'cmpk' });
    t.equal(r.status, 0, r.stderr);
    const sent = recorded(rec, 'cmp');
    t.equal(recorded(rec, 'pc').size, 0, 'no PCs posted in CMP mode');
    const k = client.kernel('cmpk');
    const ds = await k.descriptors();
    t.equal(ds.length, 2);
    const types = new Set<number>();
    for (const d of ds) {
      const snap = await k.snapshot(d.fd);
      const held = snap.text('cmp').trim().split('\n');
      t.same(held, sent.get(d.owner!), `tid ${d.owner}: the service holds exactly the comparisons sent`);
      for (const c of snap.cmps()) types.add(c.type);
    }
    t.ok([...types].some((x) => (x & 1) === 1), 'const comparisons (KCOV_CMP_CONST) seen');
    t.ok([...types].some((x) => (x & 1) === 0), 'non-const comparisons seen');
  });

  await t.test('the test enables the descriptor; the program posts as KCOVD_TID', async (t) => {
    await client.createKernel({ name: 'ext', dialect: 'linux' });
    const k = client.kernel('ext');
    const { fd } = await k.open(4242);
    await k.ioctl(fd, 'KCOV_INIT_TRACE', 4242, 65536);
    await k.ioctl(fd, 'KCOV_ENABLE', 4242, 'pc');
    const rec = join(dir, 'ext.txt');
    const r = await run({ KCOVD_TID: '4242', KCOVD_RECORD: rec, KCOVD_KERNEL: 'ext' });
    t.equal(r.status, 0, r.stderr);
    const sent = recorded(rec, 'pc').get(4242) ?? [];
    const held = (await k.snapshot(fd)).pcs();
    t.ok(sent.length > 100);
    // Two threads post as one tid: batches interleave as they arrive, so compare as multisets.
    t.same([...held].sort(), [...sent].sort(), 'every PC sent is held, and nothing else');
    t.equal((await k.descriptors()).length, 1, 'the runtime opened nothing itself');
  });
});
