// Self time by function from a .cpuprofile, idle excluded:
//   node bench/profsum.mjs file [top] [skip-ms (start-up to leave out)]
import { readFileSync } from 'node:fs';
const p = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const top = Number(process.argv[3] ?? 30);
const skip = Number(process.argv[4] ?? 0) * 1000;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
let total = 0, t = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i] ?? 0;
  if (t < skip) continue;
  const n = byId.get(p.samples[i]);
  const cf = n.callFrame;
  if (cf.functionName === '(idle)') continue;
  const d = p.timeDeltas[i + 1] ?? 0;
  total += d;
  const key = `${cf.functionName || '(anon)'} ${cf.url.replace(/^.*node_modules\//, '').replace(/^file:\/\/.*\/dist\//, '')}:${cf.lineNumber + 1}`;
  self.set(key, (self.get(key) ?? 0) + d);
}
console.log(`busy ${(total / 1000).toFixed(0)} ms after ${skip / 1000} ms`);
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
for (const [k, v] of rows) console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`);
