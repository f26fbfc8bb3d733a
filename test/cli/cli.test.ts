/** The kcovd CLI as a child process against a live server. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Progress, progressLine } from '../../src/cli/progress.js';
import { BinaryBatcher, sniff, TextBatcher } from '../../src/cli/input.js';
import { listenApp } from '../live.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  raw: Buffer;
}

function kcovd(args: string[], opts: { url?: string; input?: string | Buffer; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string | undefined> = { ...process.env, KCOVD_URL: opts.url, KCOV_TOKEN: '', ...opts.env };
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => {
      const raw = Buffer.concat(out);
      resolve({ code, stdout: raw.toString(), stderr: Buffer.concat(err).toString(), raw });
    });
    child.stdin.end(opts.input ?? '');
  });
}

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

t.test('kernels, descriptors, ioctl, events and cover', async (t) => {
  const { url } = await listenApp(t);
  const ks = await kcovd(['kernels', '--json'], { url });
  t.equal(ks.code, 0, ks.stderr);
  t.same(JSON.parse(ks.stdout).kernels.map((k: { name: string }) => k.name), ['default']);
  const made = await kcovd(['create-kernel', '--dialect', 'linux', '--name', 'lx', '--ncpus', '2'], { url });
  t.equal(made.stdout, 'lx\n', 'create-kernel prints the name');
  const text = await kcovd(['kernels'], { url });
  t.match(text.stdout, /^NAME\s+DIALECT/);
  t.match(text.stdout, /\nlx\s+linux\s+2\s/);
  t.equal((await kcovd(['delete-kernel', 'lx'], { url })).code, 0);

  const open = await kcovd(['open', '--tid', '7'], { url });
  t.equal(open.code, 0, open.stderr);
  const fd = open.stdout.trim();
  t.match(fd, /^\d+$/, 'open prints the fd alone');
  const init = await kcovd(['ioctl', fd, 'KCOV_INIT_TRACE', '--tid', '7', '--arg', '32'], { url });
  t.match(init.stdout, /^ret 0: fd \d+ INIT/);
  const en = await kcovd(['ioctl', fd, '0x6364', '--tid', '7', '--arg', 'pc', '--json'], { url });
  t.match(JSON.parse(en.stdout), { ret: 0, descriptor: { state: 'TRACE_PC', mode: 'pc', owner: 7 } }, 'request number works too');

  // text lines on stdin (auto-detected)
  const ev = await kcovd(['events', '--tid', '7'], { url, input: '0xffffffff81000010\n# comment\n\n0x20\n30\n' });
  t.equal(ev.code, 0, ev.stderr);
  t.equal(ev.stdout, 'posted 3 records in 1 requests: accepted 3, dropped 0, ignored 0, count 3\n');
  t.equal(ev.stderr, '', 'no progress bar when stderr is not a terminal');

  // a binary file in several batches, in order
  const bin = Buffer.alloc(10 * 8);
  for (let i = 0; i < 10; i++) bin.writeUInt32LE(0x1000 + i, i * 8);
  writeFileSync(join(tmp, 'trace.bin'), bin);
  const evb = await kcovd(['events', '--tid', '7', '--batch', '4', '--json', join(tmp, 'trace.bin')], { url });
  t.match(JSON.parse(evb.stdout), { requests: 3, records: 10, accepted: 10, count: 13 }, '10 records in batches of 4');

  // a JSON file
  writeFileSync(join(tmp, 'ev.json'), JSON.stringify({ pcs: ['0x40'], sites: ['fs/open.c:42'] }));
  const evj = await kcovd(['events', '--tid', '7', join(tmp, 'ev.json')], { url });
  t.match(evj.stdout, /posted 2 records in 1 requests: accepted 2/);

  const cover = await kcovd(['cover', fd], { url });
  const lines = cover.stdout.trim().split('\n');
  t.equal(lines.length, 15);
  t.same(lines.slice(0, 4), ['0xffffffff81000010', '0x20', '0x1e', '0x1000'], 'rawcover text, in order');
  t.equal(lines[13], '0x40');
  t.match(lines[14], /^0x[0-9a-f]{16}$/, 'a site as its FNV-1a PC');
  const cj = await kcovd(['cover', fd, '--json'], { url });
  t.same(JSON.parse(cj.stdout).pcs, lines);
  const raw = await kcovd(['cover', fd, '--format', 'raw', '--reset'], { url });
  t.equal(raw.raw.length, 32 * 8, 'raw is the whole area');
  t.equal(raw.raw.readUInt32LE(0), 15, 'word 0 is the count');
  t.equal(raw.raw.readUInt32LE(8 * 2), 0x20);
  t.equal((await kcovd(['cover', fd], { url })).stdout, '', '--reset zeroed the count');

  // round trip: cover's text output is events' text input
  const again = await kcovd(['events', '--tid', '7', '--format', 'text'], { url, input: cover.stdout });
  t.match(again.stdout, /accepted 15/);
  t.equal((await kcovd(['cover', fd], { url })).stdout, cover.stdout);

  const ds = await kcovd(['descriptors'], { url });
  t.match(ds.stdout, new RegExp(`\\n${fd}\\s+TRACE_PC\\s+pc\\s+32\\s+15\\s+31\\s+7\\n`));
  const th = await kcovd(['threads', '--json'], { url });
  t.match(JSON.parse(th.stdout).threads, [{ tid: 7, fd: Number(fd) }]);
  t.equal((await kcovd(['close', fd], { url })).code, 0);
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

t.test('global options go before or after the command (issue #15: `kcovd -k NAME kernels`)', async (t) => {
  const { url } = await listenApp(t);
  t.equal((await kcovd(['create-kernel', '--dialect', 'openbsd', '--name', 'obsd'], { url })).code, 0);
  const before = await kcovd(['-k', 'obsd', '--json', 'open', '--tid', '1'], { url });
  t.equal(before.code, 0, before.stderr);
  t.equal(JSON.parse(before.stdout).state, 'NONE', '-k and --json before the command: an OpenBSD descriptor');
  const attached = await kcovd(['-kobsd', 'descriptors', '--json'], { url });
  t.equal(JSON.parse(attached.stdout).descriptors.length, 1, '-kNAME before, --json after');
  const long = await kcovd(['--kernel=obsd', '--url', url, 'descriptors'], { url: 'http://127.0.0.1:1' });
  t.equal(long.code, 0, `--kernel=NAME and --url before the command win over KCOVD_URL: ${long.stderr}`);
  t.match(long.stdout, /^FD\s+STATE/);
  const after = await kcovd(['descriptors', '-k', 'obsd', '--json'], { url });
  t.same(JSON.parse(after.stdout), JSON.parse(attached.stdout), 'the same after the command');
  const help = await kcovd(['-k', 'obsd', 'ioctl', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^Usage: kcovd ioctl/);
  t.match(help.stdout, /KIOREMOTEATTACH\s+0x80084b04/, 'ioctl help lists each dialect\'s requests from the wire table');
  const bad = await kcovd(['--bogus', 'kernels'], { url });
  t.equal(bad.code, 2);
  t.match(bad.stderr, /unknown option "--bogus"/);
  const none = await kcovd(['-k', 'obsd'], { url });
  t.equal(none.code, 2, 'options but no command');
  const plan9 = await kcovd(['create-kernel', '--dialect', 'plan9'], { url });
  t.equal(plan9.code, 2, 'a dialect that is not in the list is a usage error');
  t.match(plan9.stderr, /--dialect: one of linux, openbsd, netbsd, freebsd/);
  const serve = await kcovd(['--json', 'serve']);
  t.equal(serve.code, 2, 'client options do not go to serve');
  t.match(serve.stderr, /--json is an option of the client commands/);
});

t.test('one invocation works with one start of the service: a restart midway exits 1 with ESTALE', async (t) => {
  const { app, url } = await listenApp(t);
  const k = app.engine.kernel('default');
  const fd = k.open(1).fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 64);
  k.ioctl(fd, 'KCOV_ENABLE', 1, 'pc');
  // After the first batch is answered the service "restarts": the same app under another boot id.
  let posts = 0;
  app.server.on('request', (req, res) => {
    if (req.method === 'POST' && ++posts === 1) res.on('finish', () => ((app.appState as { bootId: string }).bootId = 'a-later-start'));
  });
  const r = await kcovd(['events', '--tid', '1', '--batch', '1'], { url, input: '0x10\n0x20\n0x30\n' });
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, /^kcovd events: ESTALE: the service at http:\/\/127\.0\.0\.1:\d+ restarted during this command \(boot [\w-]+, now a-later-start\)/);
  t.equal(k.descriptor(fd).trace()!.count, 1, 'only the batch before the restart was applied');
});
