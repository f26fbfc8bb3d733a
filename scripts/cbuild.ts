/**
 * Builds of the C runtime (examples/c) and of the SQLite workload, cached
 * outside git in ~/.cache/kcovd (KCOVD_CACHE_DIR overrides), keyed by the
 * sha-256 of their inputs and the compiler's version, so the test suite and
 * `npm run bench` compile the 270k-line amalgamation once per machine.
 * Each build happens in a private directory renamed into place, so parallel
 * test files never see a half-built tree.
 *
 * The amalgamation comes from the npm registry: `npm pack better-sqlite3@12`
 * ships deps/sqlite3/sqlite3.c. It is never committed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const C_SRC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', 'c');
const SQLITE_PACKAGE = 'better-sqlite3@12';

export function cacheDir(): string {
  const d = process.env.KCOVD_CACHE_DIR ?? join(homedir(), '.cache', 'kcovd');
  mkdirSync(d, { recursive: true });
  return d;
}

export function has(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;
}

function sha(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 24);
}

function toolVersion(tool: string): string {
  return has(tool) ? execFileSync(tool, ['--version']).toString().split('\n')[0] : 'absent';
}

/** Run fn in a fresh directory, then move it to `final` (unless another process got there first). */
function buildOnce(final: string, fn: (dir: string) => void): string {
  if (existsSync(join(final, '.done'))) return final;
  const tmp = `${final}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(tmp, { recursive: true });
  try {
    fn(tmp);
    execFileSync('touch', [join(tmp, '.done')]);
    try {
      renameSync(tmp, final);
    } catch {
      if (!existsSync(join(final, '.done'))) throw new Error(`cannot move ${tmp} to ${final}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return final;
}

function sourceFiles(): string[] {
  return readdirSync(C_SRC).filter((f) => /\.(c|h)$|^Makefile$/.test(f)).sort();
}

/** examples/c built with make: `targets` of its Makefile. Returns the directory holding them. */
export function runtimeBuild(targets: string[]): string {
  const files = sourceFiles();
  const key = sha(...files.flatMap((f) => [f, readFileSync(join(C_SRC, f))]), toolVersion('gcc'), toolVersion('clang'), targets.join(' '));
  return buildOnce(join(cacheDir(), 'runtime', key), (dir) => {
    for (const f of files) cpSync(join(C_SRC, f), join(dir, f));
    execFileSync('make', ['-s', '-C', dir, ...targets], { stdio: ['ignore', 'ignore', 'inherit'] });
  });
}

/** The amalgamation, from the npm registry's better-sqlite3 tarball, cached by content. */
export function sqliteSource(): { dir: string; hash: string } {
  const base = join(cacheDir(), 'sqlite-src');
  const dir = buildOnce(join(base, 'current'), (tmp) => {
    const out = execFileSync('npm', ['pack', SQLITE_PACKAGE, '--silent', '--pack-destination', tmp], { cwd: tmp, timeout: 120_000 })
      .toString().trim().split('\n').pop()!;
    execFileSync('tar', ['xzf', join(tmp, out), '-C', tmp, 'package/deps/sqlite3/sqlite3.c', 'package/deps/sqlite3/sqlite3.h']);
    renameSync(join(tmp, 'package', 'deps', 'sqlite3', 'sqlite3.c'), join(tmp, 'sqlite3.c'));
    renameSync(join(tmp, 'package', 'deps', 'sqlite3', 'sqlite3.h'), join(tmp, 'sqlite3.h'));
    rmSync(join(tmp, 'package'), { recursive: true, force: true });
    rmSync(join(tmp, out), { force: true });
  });
  return { dir, hash: sha(readFileSync(join(dir, 'sqlite3.c'))) };
}

/** SQLite's compile options: lookaside off (heap layout must not steer the path), no threads, no extensions. */
export const SQLITE_DEFINES = ['-DSQLITE_OMIT_LOOKASIDE', '-DSQLITE_DEFAULT_LOOKASIDE=0,0', '-DSQLITE_THREADSAFE=0', '-DSQLITE_OMIT_LOAD_EXTENSION', '-DSQLITE_DEFAULT_MEMSTATUS=0'];

export interface SqliteBuild {
  /** linked with libkcovd_rt.a */
  rt: string;
  /** linked with the local reference recorder */
  ref: string;
  /** not instrumented */
  plain: string;
  lines: number;
}

/** sqlite_workload linked three ways; the instrumented objects are the same bytes in rt and ref. */
export function sqliteBuild(): SqliteBuild {
  const src = sqliteSource();
  const rtDir = runtimeBuild(['libkcovd_rt.a', 'refrec.o']);
  const wl = readFileSync(join(C_SRC, 'sqlite_workload.c'));
  const cov = ['-O1', '-g0', '-fno-pie', '-fsanitize-coverage=trace-pc'];
  const key = sha(src.hash, wl, readFileSync(join(rtDir, 'libkcovd_rt.a')), readFileSync(join(rtDir, 'refrec.o')), toolVersion('gcc'), cov.join(' '), SQLITE_DEFINES.join(' '));
  const objKey = sha(src.hash, toolVersion('gcc'), cov.join(' '), SQLITE_DEFINES.join(' '));
  const objDir = buildOnce(join(cacheDir(), 'sqlite-obj', objKey), (tmp) => {
    execFileSync('gcc', [...cov, ...SQLITE_DEFINES, '-c', '-o', join(tmp, 'sqlite3.o'), join(src.dir, 'sqlite3.c')]);
    execFileSync('gcc', ['-O1', '-g0', '-fno-pie', ...SQLITE_DEFINES, '-c', '-o', join(tmp, 'sqlite3-plain.o'), join(src.dir, 'sqlite3.c')]);
  });
  const dir = buildOnce(join(cacheDir(), 'sqlite-bin', key), (tmp) => {
    const wlc = join(C_SRC, 'sqlite_workload.c');
    execFileSync('gcc', [...cov, '-I', src.dir, '-c', '-o', join(tmp, 'wl.o'), wlc]);
    execFileSync('gcc', ['-O1', '-g0', '-fno-pie', '-I', src.dir, '-c', '-o', join(tmp, 'wl-plain.o'), wlc]);
    const sq = join(objDir, 'sqlite3.o');
    execFileSync('gcc', ['-no-pie', '-o', join(tmp, 'sqlite-rt'), join(tmp, 'wl.o'), sq, join(rtDir, 'libkcovd_rt.a'), '-lpthread', '-lm']);
    execFileSync('gcc', ['-no-pie', '-o', join(tmp, 'sqlite-ref'), join(tmp, 'wl.o'), sq, join(rtDir, 'refrec.o'), '-lpthread', '-lm']);
    execFileSync('gcc', ['-no-pie', '-o', join(tmp, 'sqlite-plain'), join(tmp, 'wl-plain.o'), join(objDir, 'sqlite3-plain.o'), '-lpthread', '-lm']);
  });
  const lines = readFileSync(join(src.dir, 'sqlite3.c'), 'latin1').split('\n').length;
  return { rt: join(dir, 'sqlite-rt'), ref: join(dir, 'sqlite-ref'), plain: join(dir, 'sqlite-plain'), lines };
}

/** Address of a symbol in a non-PIE binary (nm), to relate PCs of two links of the same objects. */
export function symbolAddress(binary: string, name: string): bigint {
  const out = execFileSync('nm', ['--defined-only', binary]).toString();
  const m = new RegExp(`^([0-9a-f]+) [tT] ${name}$`, 'm').exec(out);
  if (m === null) throw new Error(`no symbol ${name} in ${binary}`);
  return BigInt(`0x${m[1]}`);
}

/** [start, end) of a function symbol (nm -S). */
export function symbolRange(binary: string, name: string): [bigint, bigint] {
  const out = execFileSync('nm', ['-S', '--defined-only', binary]).toString();
  const m = new RegExp(`^([0-9a-f]+) ([0-9a-f]+) [tT] ${name}$`, 'm').exec(out);
  if (m === null) throw new Error(`no sized symbol ${name} in ${binary}`);
  const start = BigInt(`0x${m[1]}`);
  return [start, start + BigInt(`0x${m[2]}`)];
}
