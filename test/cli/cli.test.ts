/** The kcovd CLI as a child process against a live server. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { Progress, progressLine } from '../../src/cli/progress.js';
import { BinaryBatcher, sniff, TextBatcher } from '../../src/cli/input.js';
import { CLI, kcovd, listenApp } from '../live.js';

const tmp = mkdtempSync(join(tmpdir(), 'kcovd-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('--help on every command, and the command list', async (t) => {
  const top = await kcovd(['--help']);
  t.equal(top.code, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z-]+) {2,}/gm)].map((m) => m[1]!);
  t.ok(names.length >= 10, `commands listed: ${names.join(' ')}`);
  for (const n of ['serve', 'kernels', 'descriptors', 'ioctl', 'events', 'cover']) t.ok(names.includes(n), n);
  const helps = await Promise.all(names.map((n) => kcovd([n, '--help'])));
  helps.forEach((h, i) => {
    t.equal(h.code, 0, `${names[i]} --help exits 0`);
    t.match(h.stdout, new RegExp(`^Usage: kcovd ${names[i]}`), `${names[i]} --help shows its usage`);
  });
  const bad = await kcovd(['frobnicate']);
  t.equal(bad.code, 2, 'unknown command is a usage error');
  t.match(bad.stderr, /unknown command "frobnicate"/);
  const none = await kcovd([]);
  t.equal(none.code, 2);
});

t.test('errors: problems exit 1 with the errno, usage exits 2', async (t) => {
  const { url } = await listenApp(t);
  const fd = (await kcovd(['open', '--tid', '3'], { url })).stdout.trim();
  // Linux kcov_ioctl_locked: KCOV_ENABLE before KCOV_INIT_TRACE is EINVAL.
  const r = await kcovd(['ioctl', fd, 'KCOV_ENABLE', '--tid', '3', '--arg', '0'], { url });
  t.equal(r.code, 1);
  t.match(r.stderr, /^kcovd ioctl: EINVAL \(22\): /);
  const rj = await kcovd(['ioctl', fd, 'KCOV_NOPE', '--tid', '3', '--json'], { url });
  t.match(JSON.parse(rj.stderr), { status: 400, errno: 'ENOTTY', code: 25 });
  const gone = await kcovd(['cover', '99'], { url });
  t.equal(gone.code, 1);
  t.match(gone.stderr, /EBADF|ENOENT/);

  const usage = await kcovd(['ioctl', fd, 'KCOV_INIT_TRACE'], { url });
  t.equal(usage.code, 2, 'missing --tid');
  t.match(usage.stderr, /--tid: expected a whole number/);
  t.equal((await kcovd(['kernels', '--bogus'], { url })).code, 2, 'unknown flag');
  const badline = await kcovd(['events', '--tid', '3', '--format', 'text'], { url, input: '0x10\nnot-a-pc\n' });
  t.equal(badline.code, 2);
  t.match(badline.stderr, /line 2: "not-a-pc" is not a 64-bit value/);
  const unreachable = await kcovd(['kernels'], { url: 'http://127.0.0.1:9' });
  t.equal(unreachable.code, 1);
  t.match(unreachable.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
});

t.test('serve starts the service with the config flags and drains on SIGTERM', async (t) => {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--dialect', 'linux', '--ncpus', '3'], {
    env: { ...process.env, LOG_LEVEL: 'info', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (c: Buffer) => {
      buf += c.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
    setTimeout(() => reject(new Error(`serve did not start: ${buf}`)), 15000).unref();
  });
  const ks = await kcovd(['kernels', '--json'], { url });
  t.match(JSON.parse(ks.stdout).kernels, [{ name: 'default', dialect: 'linux', ncpus: 3 }]);
  const code = await new Promise<number | null>((resolve) => {
    child.on('exit', resolve);
    child.kill('SIGTERM');
  });
  t.equal(code, 0, 'clean exit on SIGTERM');
  const bad = await kcovd(['serve', '--dialect', 'plan9']);
  t.equal(bad.code, 2);
  t.match(bad.stderr, /KCOV_DIALECT/);
});

t.test('progress bar and input helpers', async (t) => {
  t.equal(progressLine(512 * 1024, 1024 * 1024, 65536, 80), '[####################--------------------]  50% 0.5/1.0 MiB, 65536 records');
  t.equal(progressLine(2 * 1048576, null, 7), 'posting 2.0 MiB, 7 records');
  const written: string[] = [];
  const tty = new Progress({ isTTY: true, columns: 60, write: (s) => written.push(s) }, 100);
  tty.update(50, 1, true);
  tty.done();
  t.equal(written.length, 2);
  t.match(written[0], /^\r\[#+-+\]  50%/);
  t.equal(written[1], '\r\x1b[K', 'the line is cleared at the end');
  const pipe: string[] = [];
  const quiet = new Progress({ isTTY: false, write: (s) => pipe.push(s) }, 100);
  quiet.update(50, 1, true);
  quiet.done();
  t.same(pipe, [], 'nothing drawn when stderr is not a terminal');

  t.equal(sniff(Buffer.from(' {"pcs":[]}')), 'json');
  t.equal(sniff(Buffer.from('0xffffffff81000000\n')), 'text');
  t.equal(sniff(Buffer.from([0x10, 0, 0, 0x81, 0xff, 0xff, 0xff, 0xff])), 'binary');
  t.equal(sniff(Buffer.from('12345678')), 'text', 'ASCII digits read as text');

  const b = new BinaryBatcher(16);
  t.same([...b.push(new Uint8Array(20))].map((x) => x.length), [16]);
  t.same([...b.push(new Uint8Array(30))].map((x) => x.length), [16, 16]);
  t.equal(b.rest()?.length, 2, 'the tail is kept for the end');

  const tx = new TextBatcher('cmp', 2);
  const bodies = [...tx.push('0x5 0x2a 0x7 0xffffffff81000100\n0x1 1 2 3\n0x'), ...tx.push('0 0 0 0'), ...tx.end()];
  t.same(bodies.map((x) => x.length), [64, 32]);
  t.equal(Buffer.from(bodies[0]!).readUInt32LE(8), 0x2a);
  t.equal(Buffer.from(bodies[0]!).readUInt32LE(28), 0xffffffff);
  t.throws(() => [...new TextBatcher('cmp', 2).push('0x1 0x2\n')], /line 1: expected four values/);
});

