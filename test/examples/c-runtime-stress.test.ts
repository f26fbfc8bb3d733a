/**
 * The C runtime under threads, fork, signals, abort and _exit, and with clang's
 * trace-pc-guard. "Exact" means: the PCs kcovd holds for a thread are, in order,
 * the ones the local reference recorder (examples/c/refrec.c: each thread its
 * own kcov-shaped area, no locks) recorded for the same thread of the same
 * program. The two links place the same instrumented code at addresses that
 * differ by one constant (their PLTs differ), taken from `nm`.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runtimeBuild, symbolAddress, symbolRange } from '../../scripts/cbuild.js';
import { listenApp } from '../live.js';
import { area, firstDiff, jsonOf, needTool, pcsOf, readWords, run, stats, summary, type Target } from './chelp.js';

t.setTimeout(300_000);

const noGcc = needTool('gcc') || needTool('make');

t.test('C runtime under stress', { skip: noGcc }, async (t) => {
  const dir = runtimeBuild(['stress', 'stress-ref']);
  const rt = join(dir, 'stress');
  const ref = join(dir, 'stress-ref');
  const delta = symbolAddress(ref, 'main') - symbolAddress(rt, 'main');
  const { url } = await listenApp(t);
  const target: Target = { url };
  const scratch = mkdtempSync(join(tmpdir(), 'kcovd-stress-'));
  t.teardown(() => rmSync(scratch, { recursive: true, force: true }));
  let kernels = 0;
  const kernel = async () => {
    const name = `k${++kernels}`;
    await jsonOf(target, 'POST', '/v1/kernels', { name, dialect: 'linux' });
    return name;
  };
  const refRun = async (args: string[]) => {
    const out = join(scratch, `ref${++kernels}`);
    rmSync(out, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(out);
    const r = await run(ref, args, { REFREC_DIR: out });
    return { r, out, file: (tid: number | string) => readWords(join(out, `pc.${tid}`)) };
  };
  /** "... tid T fd F ..." lines: the tid a thread posted as and the descriptor the runtime opened for it. */
  const fdOf = (stdout: string, who: string): { tid: number; fd: number } => {
    const m = new RegExp(`^${who} tid (-?\\d+) fd (-?\\d+)`, 'm').exec(stdout);
    if (m === null) throw new Error(`no "${who} tid" line in ${stdout}`);
    return { tid: Number(m[1]), fd: Number(m[2]) };
  };
  const tidsOf = (stdout: string, re: RegExp) => [...stdout.matchAll(re)].map((m) => Number(m[1]));

  await t.test('4 threads at once: each tid its own descriptor, each sequence exact', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['threads', '4', '50000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc' }, 60_000);
    t.equal(r.code, 0, r.stderr);
    t.equal(r.stderr, '', 'nothing lost, nothing to say');
    const st = stats(r.stdout);
    t.equal(st.stored, st.seen, 'every record seen was stored');
    t.equal(st.runtime_dropped + st.area_dropped + st.nested_lost, 0);
    const tids = tidsOf(r.stdout, /^thread \d+ tid (\d+)/gm);
    const fds = tidsOf(r.stdout, /^thread \d+ tid \d+ fd (\d+)/gm);
    t.equal(new Set(tids).size, 4, 'four distinct tids');
    const rr = await refRun(['threads', '4', '50000']);
    const refTids = tidsOf(rr.r.stdout, /^thread \d+ tid (\d+)/gm);
    for (let i = 0; i < 4; i++) {
      const held = pcsOf(await area(target, k, fds[i]), delta);
      const want = pcsOf(rr.file(refTids[i]));
      t.ok(want.length > 150_000, `thread ${i}: ${want.length} PCs`);
      t.equal(firstDiff(held, want), -1, `thread ${i} (tid ${tids[i]}): the same ${want.length} PCs in the same order`);
    }
    const threads: { tid: number }[] = (await jsonOf(target, 'GET', `/v1/kernels/${k}/threads`)).threads;
    t.same(threads.filter((x) => tids.includes(x.tid)), [], 'every thread was ended in the service at its exit');
  });

  await t.test('more threads than KCOVD_THREADS slots: the ones without a slot are counted as dropped', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['threads', '4', '20000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc', KCOVD_THREADS: '3' });
    t.equal(r.code, 0);
    const st = stats(r.stdout);
    const traced = tidsOf(r.stdout, /^thread \d+ tid (-?\d+)/gm).filter((x) => x > 0).length;
    t.ok(traced >= 1 && traced <= 2, `${traced} of 4 threads found a slot (the main thread holds one)`);
    t.ok(st.runtime_dropped > 0, `${st.runtime_dropped} records of the others counted`);
    t.equal(st.stored + st.runtime_dropped, st.seen, 'seen = stored + dropped');
    t.match(r.stderr, /dropped by the runtime/, 'and said at exit');
  });

  for (const mode of ['off', 'trace'] as const) {
    await t.test(`fork, parent and child running together, KCOVD_FORK=${mode}`, async (t) => {
      const k = await kernel();
      const r = await run(rt, ['fork', '100000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc', KCOVD_FORK: mode, KCOVD_BATCH: '16384' }, 30_000);
      t.equal(r.code, 0, `no hang, exit 0: ${r.stderr}`);
      const parent = fdOf(r.stdout, 'parent');
      const childPid = Number(/child (\d+) status 0/.exec(r.stdout)?.[1]);
      t.ok(childPid > 0, 'the child exited 0');
      const rr = await refRun(['fork', '100000']);
      const refParent = tidsOf(rr.r.stdout, /^parent tid (\d+)/gm)[0];
      const refChild = Number(/child (\d+) status 0/.exec(rr.r.stdout)?.[1]);
      const held = pcsOf(await area(target, k, parent.fd), delta);
      const want = pcsOf(rr.file(refParent));
      t.equal(firstDiff(held, want), -1, `parent: exactly its ${want.length} PCs, the pre-fork ones once`);
      const ds: { owner: number | null; fd: number }[] = (await jsonOf(target, 'GET', `/v1/kernels/${k}/descriptors`)).descriptors;
      if (mode === 'off') {
        t.equal(ds.length, 1, 'the child opened nothing (a Linux child has no kcov)');
        t.same(fdOf(r.stdout, 'child'), { tid: -1, fd: -1 }, 'the child does not trace');
        t.equal(stats(r.stdout, 'child').seen, 0);
      } else {
        t.equal(ds.length, 2, 'the child has a descriptor of its own');
        const child = fdOf(r.stdout, 'child');
        t.equal(child.tid, childPid, 'the child posts as its own tid');
        const mine = pcsOf(await area(target, k, child.fd), delta);
        const refMine = pcsOf(rr.file(refChild));
        t.equal(firstDiff(mine, refMine), -1, `child: exactly its ${refMine.length} PCs, none of the parent's`);
        t.equal(stats(r.stdout, 'child').stored, stats(r.stdout, 'child').seen);
      }
      const st = stats(r.stdout, 'parent');
      t.equal(st.stored, st.seen, 'parent: everything seen is stored');
    });
  }

  await t.test('an instrumented signal handler under a 20 kHz timer: no duplicates, no corruption, losses counted', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['signal', '400000', '20000'], {
      KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc', KCOVD_WORDS: String(1 << 24), KCOVD_WAIT_MS: '60000', KCOVD_BATCH: '65536',
    }, 90_000);
    t.equal(r.code, 0, r.stderr);
    const { fd } = fdOf(r.stdout, 'signal');
    const calls = Number(/handler_calls (\d+)/.exec(r.stdout)?.[1]);
    t.ok(calls > 50, `${calls} handler calls`);
    const [h0, h1] = symbolRange(rt, 'on_alarm');
    const [w0, w1] = symbolRange(rt, 'handler_work');
    const inHandler = (pc: bigint) => (pc >= h0 && pc < h1) || (pc >= w0 && pc < w1);
    // One handler call, alone (reference recorder, no timer): its PCs in order.
    const one = await refRun(['handler', '1']);
    const H = pcsOf(one.file(onlyTid(one.out))).map((pc) => pc - delta).filter(inHandler);
    t.ok(H.length > 5, `one call records ${H.length} PCs`);
    const held = pcsOf(await area(target, k, fd));
    const main: bigint[] = [];
    let handlerPcs = 0;
    let badRun = -1;
    for (let i = 0; i < held.length;) {
      if (!inHandler(held[i])) {
        main.push(held[i++]);
        continue;
      }
      let j = i;
      while (j < held.length && inHandler(held[j])) j++;
      // a run of handler PCs must be whole calls: H, H H, ...
      const len = j - i;
      if (len % H.length !== 0) badRun = i;
      for (let x = 0; x < len && badRun < 0; x++) if (held[i + x] !== H[x % H.length]) badRun = i;
      handlerPcs += len;
      i = j;
    }
    t.equal(badRun, -1, 'every handler run is whole calls, in order');
    const refMain = await refRun(['signal', '400000', '0']);
    const want = pcsOf(refMain.file(tidsOf(refMain.r.stdout, /^signal tid (\d+)/gm)[0])).map((pc) => pc - delta);
    t.equal(firstDiff(main, want), -1, `outside the handler: exactly the ${want.length} PCs of the run without a timer`);
    const st = stats(r.stdout);
    t.equal(st.runtime_dropped, 0, 'nothing dropped by the runtime (KCOVD_WAIT_MS is long)');
    t.equal(st.nested_lost % H.length, 0, 'a call that interrupted a hook is lost whole');
    t.equal(calls * H.length, handlerPcs + st.nested_lost, `${calls} calls: ${handlerPcs / H.length} stored, ${st.nested_lost / H.length} counted as lost`);
    t.equal(st.stored + st.nested_lost, st.seen, 'seen = stored + lost in nested hooks');
  });

  await t.test('abort(): the tail is flushed by the SIGABRT handler, chained to the default action', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['abort', '200000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc' });
    t.equal(r.signal, 'SIGABRT', 'the program still dies of SIGABRT');
    const { fd } = fdOf(r.stdout, 'abort');
    const rr = await refRun(['abort', '200000']);
    const held = pcsOf(await area(target, k, fd), delta);
    const want = pcsOf(rr.file(tidsOf(rr.r.stdout, /^abort tid (\d+)/gm)[0]));
    t.ok(want.length % (1 << 18) !== 0, 'the run ends in a partial batch');
    t.equal(firstDiff(held, want), -1, `all ${want.length} PCs, the partial last batch included`);
  });

  await t.test('exec: the old image flushes and ends its thread, the new one (same tid) starts clean', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['exec', '200000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc', KCOVD_VERBOSE: '1' });
    t.equal(r.code, 0, r.stderr);
    const before = fdOf(r.stdout, 'exec');
    const after = fdOf(r.stdout, 'work');
    t.equal(after.tid, before.tid, 'the same tid after exec');
    t.not(after.fd, before.fd, 'a descriptor of its own');
    t.notMatch(r.stderr, /EBUSY|HTTP 4/, 'no EBUSY: the old image ended the thread');
    const seen = [...r.stderr.matchAll(/(\d+) records seen, \d+ sent, (\d+) stored/g)].map((m) => [Number(m[1]), Number(m[2])]);
    t.equal(seen.length, 2, 'two summaries, one per image');
    t.equal(Number((await area(target, k, before.fd))[0]), seen[0][1], 'the old image: everything stored before exec');
    t.equal(seen[0][0], seen[0][1]);
    t.equal(Number((await area(target, k, after.fd))[0]), seen[1][1], 'the new image: its own records');
  });

  await t.test('_exit(): the tail is flushed too', async (t) => {
    const k = await kernel();
    const r = await run(rt, ['exit', '300000'], { KCOVD_URL: url, KCOVD_KERNEL: k, KCOVD_ENABLE: 'pc', KCOVD_VERBOSE: '1' });
    t.equal(r.code, 0);
    const { fd } = fdOf(r.stdout, 'exit');
    const s = summary(r.stderr);
    t.ok(s !== null, r.stderr);
    const held = await area(target, k, fd);
    t.equal(Number(held[0]), s!.seen, 'the area holds every record the hooks saw');
    t.equal(s!.stored, s!.seen);
  });
});

t.test('clang -fsanitize-coverage=trace-pc-guard', { skip: noGcc || needTool('clang') }, async (t) => {
  const dir = runtimeBuild(['demo-guard', 'demo-guard-ref']);
  const rt = join(dir, 'demo-guard');
  const ref = join(dir, 'demo-guard-ref');
  const delta = symbolAddress(ref, 'main') - symbolAddress(rt, 'main');
  const { url } = await listenApp(t);
  const target: Target = { url };
  const r = await run(rt, ['400'], { KCOVD_URL: url, KCOVD_ENABLE: 'pc' });
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  const out = mkdtempSync(join(tmpdir(), 'kcovd-guard-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const rr = await run(ref, ['400'], { REFREC_DIR: out });
  t.equal(rr.code, 0);
  const files = readdirSync(out).filter((f) => f.startsWith('pc.'));
  t.equal(files.length, 2, 'two threads in the reference run');
  const ds: { fd: number; owner: number; count: number }[] = (await jsonOf(target, 'GET', '/v1/kernels/default/descriptors')).descriptors;
  t.equal(ds.length, 2, 'one descriptor per thread');
  // The main thread runs work(7, 400), the other work(42, 300): told apart by length.
  const refs = files.map((f) => pcsOf(readWords(join(out, f)))).sort((a, b) => a.length - b.length);
  const held = await Promise.all(ds.map(async (d) => pcsOf(await area(target, 'default', d.fd), delta)));
  held.sort((a, b) => a.length - b.length);
  for (let i = 0; i < 2; i++) {
    t.ok(refs[i].length > 100);
    t.equal(firstDiff(held[i], refs[i]), -1, `thread ${i}: the same ${refs[i].length} edges in the same order`);
  }
});

function onlyTid(dir: string): string {
  const f = readdirSync(dir).find((x) => x.startsWith('pc.'));
  if (f === undefined) throw new Error(`no reference file in ${dir}`);
  return f.slice(3);
}
