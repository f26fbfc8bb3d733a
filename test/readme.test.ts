/**
 * The runnable examples of README.md and docs/*.md run as written against one
 * live server (the port swapped for an ephemeral one): every block whose fence
 * says `sh test` (bash) or `js test` (node, importing `kcovd/client`), in page
 * order, twice over, so each block runs where all the others already ran
 * (issue #15: no fixed fd numbers, no kernel names that collide). A `# =>`
 * (or `// =>`) line is output the block must print, in order; `...` in it
 * stands for anything. Generated parts of the pages must be current.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { generated, partsOf, regenerate } from '../scripts/gen-docs.js';
import { listenApp } from './live.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Block {
  readonly page: string;
  readonly line: number;
  readonly lang: 'sh' | 'js';
  readonly code: string;
  /** What the block must print, in order. */
  readonly expects: string[];
}

/** README.md first, then docs/README.md, then the other pages by name. */
export function pages(): string[] {
  const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md') && f !== 'README.md').sort();
  return ['README.md', 'docs/README.md', ...docs.map((f) => `docs/${f}`)];
}

export function blocksOf(page: string, text: string): Block[] {
  const out: Block[] = [];
  for (const m of text.matchAll(/^```(sh|js)[ \t]+test[ \t]*\n([\s\S]*?)^```/gm)) {
    const code = m[2]!;
    const expects = [...code.matchAll(/^\s*(?:#|\/\/) => (.*)$/gm)].map((e) => e[1]!.trim());
    out.push({ page, line: text.slice(0, m.index).split('\n').length, lang: m[1] as 'sh' | 'js', code, expects });
  }
  return out;
}

/** Where a block's expected lines are missing from its output, or null when all are there in order. */
export function missing(expects: readonly string[], output: string): string | null {
  let at = 0;
  for (const e of expects) {
    const re = new RegExp(e.split('...').map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\s\\S]*?'), 'g');
    re.lastIndex = at;
    const m = re.exec(output);
    if (m === null) return e;
    at = m.index + m[0].length;
  }
  return null;
}

const tmp = mkdtempSync(join(tmpdir(), 'kcovd-docs-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
// `kcovd` on PATH, as `npm link` puts it there.
const bin = join(tmp, 'bin');
mkdirSync(bin);
writeFileSync(join(bin, 'kcovd'), `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'dist', 'src', 'cli.js')}" "$@"\n`);
chmodSync(join(bin, 'kcovd'), 0o755);
// JS blocks live inside the package so that `import 'kcovd/client'` resolves to this build.
const jsDir = join(ROOT, 'dist', '.docs-blocks');

async function run(block: Block, address: string): Promise<string> {
  const hostPort = address.replace(/^http:\/\//, '');
  const code = block.code.replaceAll('http://127.0.0.1:5268', address).replaceAll('localhost:5268', hostPort);
  const env: Record<string, string | undefined> = { ...process.env, PATH: `${bin}:${process.env.PATH}`, KCOV_TOKEN: '', KCOVD_URL: address };
  delete env.NODE_OPTIONS;
  if (block.lang === 'sh') {
    const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', code], { encoding: 'utf8', timeout: 60_000, env, cwd: ROOT });
    return stdout;
  }
  mkdirSync(jsDir, { recursive: true });
  const file = join(jsDir, `${block.page.replace(/\W/g, '_')}_${block.line}.mjs`);
  writeFileSync(file, code);
  const { stdout } = await promisify(execFile)(process.execPath, [file], { encoding: 'utf8', timeout: 60_000, env, cwd: ROOT });
  return stdout;
}

const all = pages().filter((p) => existsSync(join(ROOT, p))).flatMap((p) => blocksOf(p, readFileSync(join(ROOT, p), 'utf8')));

t.test('the pages have runnable blocks, each with output to check', async (t) => {
  t.ok(all.length >= 7, `${all.length} blocks: ${[...new Set(all.map((b) => b.page))].join(', ')}`);
  for (const b of all) t.ok(b.expects.length > 0, `${b.page}:${b.line} says what it prints`);
});

t.test('every block runs as written, twice, each on a server where the others already ran', async (t) => {
  const { url } = await listenApp(t);
  for (const round of [1, 2]) {
    for (const b of all) {
      let out: string;
      try {
        out = await run(b, url);
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string; killed?: boolean };
        t.fail(`${b.page}:${b.line} (round ${round}) failed${e.killed === true ? ' (timed out)' : ''}: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
        continue;
      }
      const gap = missing(b.expects, out);
      t.equal(gap, null, `${b.page}:${b.line} (round ${round}) prints what it says${gap === null ? '' : `; no "${gap}" in:\n${out}`}`);
    }
  }
});

t.test('the checker of expected output can fail', async (t) => {
  t.equal(missing(['"a":1', '"b":...,"c"'], '{"a":1}\n{"b":[2, 3],"c":4}'), null);
  t.equal(missing(['"b"', '"a"'], '"a" "b"'), '"a"', 'order matters');
  t.equal(missing(['x.y'], 'xzy'), 'x.y', 'a dot is a dot');
  t.same(blocksOf('p', 'text\n```sh test\necho hi\n# => hi\n```\n```sh\nnot run\n```\n').map((b) => [b.line, b.expects]), [[2, ['hi']]]);
});

t.test('generated parts of the pages are current (npm run docs rewrites them)', async (t) => {
  const parts = generated();
  const seen = new Set<string>();
  for (const p of pages().filter((p) => existsSync(join(ROOT, p)))) {
    const text = readFileSync(join(ROOT, p), 'utf8');
    for (const name of partsOf(text)) seen.add(name);
    t.equal(regenerate(text, parts), text, `${p} is as generated`);
  }
  t.same([...seen].sort(), Object.keys(parts).sort(), 'every generated part is on some page');
});

t.test('README.md stays short and its links and the index\'s resolve', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  t.ok(Buffer.byteLength(readme) < 10 * 1024, `README.md is ${Buffer.byteLength(readme)} bytes`);
  // Pages other helpers write land with their branches; until then they may be missing.
  const elsewhere = new Set(['docs/c-runtime.md', 'docs/performance.md', 'docs/limits.md', 'docs/openapi.md', 'docs/dashboard.md', 'docs/fleet.md']);
  for (const p of pages()) {
    if (!existsSync(join(ROOT, p))) continue;
    const text = readFileSync(join(ROOT, p), 'utf8');
    for (const m of text.matchAll(/\]\(((?!https?:|#|mailto:)[^)#\s]+)(#[^)]*)?\)/g)) {
      const target = join(dirname(join(ROOT, p)), m[1]!);
      const rel = target.slice(ROOT.length + 1);
      if (elsewhere.has(rel)) continue;
      t.ok(existsSync(target), `${p} links to ${m[1]} (${rel})`);
    }
  }
});
