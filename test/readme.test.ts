/** The README's curl walkthrough runs as written (port swapped for an ephemeral one). */
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeApp } from './helpers.js';

const README = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md');

function block(after: string): string {
  const text = readFileSync(README, 'utf8');
  const at = text.indexOf(after);
  if (at < 0) throw new Error(`README has no "${after}"`);
  const m = /```sh\n([\s\S]*?)```/.exec(text.slice(at));
  if (m === null) throw new Error(`no sh block after "${after}"`);
  return m[1]!;
}

let hasCurl = true;
try {
  execFileSync('curl', ['--version'], { stdio: 'ignore' });
} catch {
  hasCurl = false;
}

/** Every sh block of a section runs as written against this server (the port is swapped). */
async function runSection(address: string, heading: string): Promise<string> {
  const hostPort = address.replace(/^http:\/\//, '');
  const script = block(heading).replaceAll('http://127.0.0.1:5268', address).replaceAll('localhost:5268', hostPort);
  const { stdout } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8', timeout: 30_000 });
  return stdout;
}

const sections: [string, RegExp[]][] = [
  ['## Remote coverage (Linux)', [
    /"remote":\{"area_size":256,"handles":\["0x100000000000001"\],"common_handle":"0x64"\}/,
    /"handle":"0x64"/,
    /\{"accepted":2,"dropped":0,"ignored":0,"count":2\}/,
    /\{"accepted":1,"dropped":0,"ignored":0,"count":1,"moved":1\}/,
    /"count":3,"words":1024,"pcs":\["0xffffffff81000100","0xffffffff81000200","0xffffffff81000300"\]/,
  ]],
  ['## OpenBSD', [/"state":"TRACE"/, /"pcs":\["0xffffffff81000010","0xffffffff81000020"\]/]],
  ['## NetBSD', [/"max_entries":524288/, /"pcs":\["0xffffffff80a01234","0xffffffff80a01238"\]/]],
  ['## FreeBSD', [/"state":"RUNNING"/, /"count":2,"words":512,"pcs":\["0xffffffff80b12340","0xffffffff80b12388"\]/]],
];

for (const [heading, wants] of sections) {
  t.test(`README ${heading.slice(3)} runs as written`, { skip: hasCurl ? false : 'curl is not installed' }, async (t) => {
    const app = await makeApp(t);
    const out = await runSection(await app.listen({ port: 0, host: '127.0.0.1' }), heading);
    for (const want of wants) t.match(out, want);
  });
}

t.test('the syzkaller-style loop', { skip: hasCurl ? false : 'curl is not installed' }, async (t) => {
  const app = await makeApp(t);
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  const script = block('## A syzkaller-style loop with curl').replaceAll('http://127.0.0.1:5268', address);
  // Async: the server answering the script lives in this process.
  const { stdout: out } = await promisify(execFile)('bash', ['-euo', 'pipefail', '-c', script], { encoding: 'utf8', timeout: 30_000 });
  t.match(out, /fd 3/);
  t.match(out, /"state":"TRACE_PC"/);
  t.match(out, /\{"accepted":3,"dropped":0,"ignored":0,"count":3\}/);
  t.match(out, /\{"accepted":2,"dropped":0,"ignored":0,"count":5\}/);
  t.match(out, /"pcs":\["0xffffffff81000010","0xffffffff81000020","0x864378d0dcd5504f","0xffffffff81000030","0xffffffff81000040"\]/);
  t.match(out, /^0xffffffff81000040$/m, 'rawcover text');
  t.match(out, /"errno":"EINVAL"/, 'the deliberate mistake');
  t.match(out, /^204$/m, 'closed');
});
