/**
 * A real program of more than 100k lines: the SQLite amalgamation (from the npm
 * registry's better-sqlite3 tarball, cached in ~/.cache/kcovd, never committed)
 * built with gcc -fsanitize-coverage=trace-pc and the runtime, running a SQL
 * workload (examples/c/sqlite_workload.c). The PC sequence kcovd holds must be
 * the local reference recorder's, PC for PC. Lookaside is off and the PRNG
 * seeded, so two runs take the same path; the two links differ only by one
 * constant displacement of the instrumented code (taken from `nm`).
 * The first run compiles the amalgamation (about a minute); later runs reuse it.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { sqliteBuild, symbolAddress } from '../../scripts/cbuild.js';
import { listenApp } from '../live.js';
import { area, jsonOf, needTool, readWords, run, summary } from './chelp.js';

t.setTimeout(400_000);

/** Equal PCs after shifting `a` by delta; PCs of a non-PIE binary fit in 32 bits, so compare 32-bit halves. */
function samePcs(a: BigUint64Array, b: BigUint64Array, delta: bigint): number {
  const n = Number(a[0]);
  if (n !== Number(b[0])) return Math.min(n, Number(b[0]));
  const a32 = new Uint32Array(a.buffer, a.byteOffset, (n + 1) * 2);
  const b32 = new Uint32Array(b.buffer, b.byteOffset, (n + 1) * 2);
  const d = Number(delta) | 0;
  for (let i = 1; i <= n; i++) {
    if (a32[2 * i + 1] !== 0 || b32[2 * i + 1] !== 0) {
      if (a[i] + delta !== b[i]) return i - 1;
    } else if (((a32[2 * i] + d) >>> 0) !== b32[2 * i]) return i - 1;
  }
  return -1;
}

t.test('SQLite (the amalgamation) with the runtime: kcovd holds the reference recorder\'s PCs, in order', { skip: needTool('gcc') || needTool('make') }, async (t) => {
  const b = sqliteBuild();
  t.ok(b.lines > 100_000, `the amalgamation has ${b.lines} lines`);
  const delta = symbolAddress(b.ref, 'main') - symbolAddress(b.rt, 'main');
  const { url } = await listenApp(t);
  const target = { url };
  // A kernel of its own; the area holds the whole run (6.5 Mi PCs at scale 1), so nothing may be dropped.
  await jsonOf(target, 'POST', '/v1/kernels', { name: 'sqlite', dialect: 'linux' });
  const words = String(1 << 24);
  const r = await run(b.rt, ['1'], { KCOVD_URL: url, KCOVD_KERNEL: 'sqlite', KCOVD_ENABLE: 'pc', KCOVD_WORDS: words, KCOVD_VERBOSE: '1' }, 120_000);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /checksum [0-9a-f]{16}/);
  const s = summary(r.stderr);
  t.ok(s !== null, r.stderr);
  t.equal(s!.stored, s!.seen, `all ${s!.seen} records stored`);
  t.equal(s!.area_dropped + s!.runtime_dropped + s!.nested_lost + s!.unconfirmed + s!.pending + s!.errors, 0, 'nothing lost anywhere');

  const out = mkdtempSync(join(tmpdir(), 'kcovd-sqlite-ref-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const rr = await run(b.ref, ['1'], { REFREC_DIR: out, REFREC_WORDS: words }, 120_000);
  t.equal(rr.code, 0);
  t.equal(rr.stdout, r.stdout, 'the same results');
  const files = readdirSync(out).filter((f) => f.startsWith('pc.'));
  t.equal(files.length, 1, 'one thread');
  const want = readWords(join(out, files[0]));
  const ds: { fd: number }[] = (await jsonOf(target, 'GET', '/v1/kernels/sqlite/descriptors')).descriptors;
  t.equal(ds.length, 1);
  const held = await area(target, 'sqlite', ds[0].fd);
  t.ok(Number(want[0]) > 1_000_000, `the reference recorded ${Number(want[0])} PCs`);
  t.equal(Number(held[0]), Number(want[0]), 'the same count');
  t.equal(samePcs(held, want, delta), -1, 'the same PCs in the same order');
});
