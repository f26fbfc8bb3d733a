/** `kcovd` global options in any position, and one start of the service per invocation (issues #15, #12). */
import t from 'tap';
import { kcovd, listenApp } from '../live.js';

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
