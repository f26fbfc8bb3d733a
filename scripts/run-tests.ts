// npm test: tap's TAP stream as it comes, then every failure again at the end, because CI
// shows only the tail of a long run and a failure in the middle of 8000 lines is lost there.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const tapBin = join(dirname(require.resolve('tap/package.json')), 'dist/esm/run.mjs');
const args = process.argv.slice(2);
const child = spawn(process.execPath, [tapBin, ...(args.length > 0 ? args : ['dist/test/**/*.test.js'])], {
  stdio: ['inherit', 'pipe', 'inherit'],
});

interface Failure { path: string[]; name: string; lines: string[] }
const failures: Failure[] = [];
const stack: string[] = []; // subtest names by depth (4 spaces a level)
let open: Failure | null = null;
let openIndent = '';

const lines = createInterface({ input: child.stdout! });
lines.on('line', (line) => {
  process.stdout.write(line + '\n');
  if (open) {
    // The YAML block after a `not ok` line runs from `---` to `...`, indented two more.
    if (line.startsWith(openIndent + '  ')) {
      open.lines.push(line.slice(openIndent.length));
      if (line.trim() === '...') open = null;
      return;
    }
    open = null;
  }
  const sub = /^(\s*)# Subtest: (.*)$/.exec(line);
  if (sub) {
    const depth = sub[1]!.length / 4;
    stack.length = depth;
    stack[depth] = sub[2]!;
    return;
  }
  const bad = /^(\s*)not ok \d+ - (.*)$/.exec(line);
  if (bad && !/# TODO/.test(bad[2]!)) {
    const depth = bad[1]!.length / 4;
    open = { path: stack.slice(0, depth), name: bad[2]!.replace(/ # time=\S+$/, ''), lines: [line.trim()] };
    openIndent = bad[1]!;
    failures.push(open);
  }
});

child.on('close', (code, signal) => {
  // A parent's `not ok` only repeats its children's; keep the innermost ones.
  const leaves = failures.filter((f) => !failures.some((g) => g !== f && g.path.length > f.path.length &&
    f.path.every((p, i) => g.path[i] === p) && g.path[f.path.length] === f.name));
  if (leaves.length > 0) {
    process.stdout.write(`\n# ${leaves.length} failure(s), repeated here from above:\n`);
    for (const f of leaves) {
      process.stdout.write(`#\n# in ${f.path.join(' > ') || '(top level)'}\n`);
      for (const l of f.lines.slice(0, 40)) process.stdout.write(`#   ${l}\n`);
    }
  }
  process.exitCode = signal ? 1 : (code ?? 1);
});
