/**
 * The C runtime when the service misbehaves: down, stalled (SIGSTOP), restarted.
 * The program must finish within a bound and say what it lost; a restart is
 * detected through the boot id (kcovd-boot / if-kcovd-boot, 412 ESTALE).
 */
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import t from 'tap';
import { runtimeBuild } from '../../scripts/cbuild.js';
import { jsonOf, needTool, run, spawnServer, stats, summary } from './chelp.js';

t.setTimeout(180_000);

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test('C runtime against a service that is down, stalled or restarted', { skip: needTool('gcc') || needTool('make') }, async (t) => {
  const dir = runtimeBuild(['stress']);
  const stress = join(dir, 'stress');

  await t.test('down: the program runs at full speed, everything is counted as dropped', async (t) => {
    const port = await closedPort();
    const r = await run(stress, ['work', '300000'], { KCOVD_URL: `http://127.0.0.1:${port}`, KCOVD_ENABLE: 'pc' }, 30_000);
    t.equal(r.code, 0, 'the program exits 0');
    t.ok(r.ms < 10_000, `finished in ${r.ms} ms`);
    t.match(r.stderr, /service unreachable/, 'said once');
    const s = summary(r.stderr);
    t.ok(s !== null, r.stderr);
    t.equal(s!.stored, 0);
    t.equal(s!.runtime_dropped, s!.seen, `all ${s!.seen} records counted as dropped by the runtime`);
  });

  await t.test('stalled (SIGSTOP): the program finishes within a bound and says what is unconfirmed', async (t) => {
    const srv = await spawnServer(t);
    srv.proc.kill('SIGSTOP');
    const env = {
      KCOVD_URL: `unix:${srv.socketPath}`, KCOVD_ENABLE: 'pc', KCOVD_TIMEOUT_MS: '1000', KCOVD_WAIT_MS: '500', KCOVD_EXIT_MS: '3000', KCOVD_BATCH: '65536',
    };
    const r = await run(stress, ['work', '600000'], env, 30_000);
    srv.proc.kill('SIGCONT');
    t.equal(r.code, 0);
    // 1 s per timed-out request, 0.5 s of waiting for a buffer, at most 3 s at exit, and the work itself
    t.ok(r.ms < 9000, `finished in ${r.ms} ms while the service was stopped`);
    t.match(r.stderr, /no reply within KCOVD_TIMEOUT_MS/);
    const s = summary(r.stderr);
    t.ok(s !== null, r.stderr);
    t.equal(s!.stored, 0);
    t.equal(s!.runtime_dropped + s!.unconfirmed + s!.pending, s!.seen, 'every record is dropped, unconfirmed or not sent, and said');
  });

  await t.test('restarted: detected by the boot id, reported, new descriptors on the new service', async (t) => {
    const a = await spawnServer(t);
    const env = { KCOVD_URL: `unix:${a.socketPath}`, KCOVD_ENABLE: 'pc', KCOVD_TIMEOUT_MS: '2000' };
    const flag = join(mkdtempSync(join(tmpdir(), 'kcovd-flag-')), 'restarted');
    t.teardown(() => rmSync(dirname(flag), { recursive: true, force: true }));
    // works, flushes and sleeps 50 ms in a loop until `flag` exists, then 10 rounds more
    const running = run(stress, ['until', flag, '50'], env, 60_000);
    // Wait until the first service holds something, then replace it by another one on the same socket
    // (the new one takes the socket path over; then the old one dies with the runtime's connection).
    const until = Date.now() + 20_000;
    for (;;) {
      const ds = (await jsonOf(a.target, 'GET', '/v1/kernels/default/descriptors')).descriptors as { count: number | null }[];
      if (ds.some((d) => (d.count ?? 0) > 0)) break;
      if (Date.now() > until) throw new Error('the program never reached the first service');
      await new Promise((r) => setTimeout(r, 50));
    }
    const b = await spawnServer(t, {}, a.socketPath);
    await a.stop();
    await new Promise((r) => setTimeout(r, 300));
    writeFileSync(flag, '');
    const r = await running;
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /the service restarted \(kcovd-boot \S+, now \S+\)/, 'the restart is reported');
    const st = stats(r.stdout);
    t.equal(st.restarts, 1, 'kcovd_stats() counts it');
    const ds = (await jsonOf(b.target, 'GET', '/v1/kernels/default/descriptors')).descriptors as { count: number | null }[];
    t.equal(ds.length, 1, 'a new descriptor on the new service');
    t.ok((ds[0].count ?? 0) > 0, 'holding the rounds after the restart');
    const s = summary(r.stderr);
    t.ok(s !== null);
    t.equal(s!.stored, s!.sent, 'what was sent was stored');
    t.equal(s!.sent + s!.runtime_dropped + s!.unconfirmed + s!.pending, s!.seen, 'and everything else is counted');
    t.ok(/records stored before are gone with it/.test(r.stderr), 'what the old service held is said to be gone');
  });
});
