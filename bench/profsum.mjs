// Self time by function from a .cpuprofile, idle excluded:
//   node bench/profsum.mjs file [top] [skip-s (start-up to leave out)] [--by=pkg]
// --by=pkg sums self time by package (node_modules name, node internals, kcovd's own files).
import { readFileSync } from 'node:fs';
const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const byPkg = process.argv.includes('--by=pkg');
const p = JSON.parse(readFileSync(args[0], 'utf8'));
const top = Number(args[1] ?? 30);
const skip = Number(args[2] ?? 0) * 1e6;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0, t = 0;
const pkgOf = (url, fn) => {
  if (url === '') return fn.startsWith('(') ? fn : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  if (url.startsWith('node:')) return 'node:' + url.slice(5).replace(/^internal\//, '').split('/')[0];
  return url.replace(/^file:\/\/.*\/dist\//, '');
};
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i] ?? 0;
  if (t < skip) continue;
  const n = byId.get(p.samples[i]);
  const cf = n.callFrame;
  if (cf.functionName === '(idle)') continue;
  const d = p.timeDeltas[i + 1] ?? 0;
  total += d;
  const key = byPkg ? pkgOf(cf.url, cf.functionName) : `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, '')}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + d);
}
console.log(`busy ${(total / 1000).toFixed(0)} ms after ${skip / 1e6} s`);
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
for (const [k, v] of rows) console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`);
