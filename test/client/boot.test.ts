/**
 * The boot id (API.md "Additions"): the client takes `kcovd-boot` from its
 * first reply and sends it back as `if-kcovd-boot`, so after a restart it gets
 * 412 ESTALE, surfaced as KcovdRestartedError, instead of someone else's fd 3.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import t from 'tap';
import { KcovdClient, KcovdError, KcovdRestartedError } from '../../src/client/index.js';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';

/** A real app on `port` (0: any) with a fixed boot id, recording the if-kcovd-boot of each request. */
async function start(bootId: string, port = 0): Promise<{ app: FastifyInstance; url: string; port: number; sent: (string | undefined)[] }> {
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2' }), bootId });
  const sent: (string | undefined)[] = [];
  app.addHook('onRequest', (req, _reply, done) => {
    const h = req.headers['if-kcovd-boot'];
    sent.push(typeof h === 'string' ? h : undefined);
    done();
  });
  await app.listen({ port, host: '127.0.0.1' });
  const p = (app.server.address() as AddressInfo).port;
  return { app, url: `http://127.0.0.1:${p}`, port: p, sent };
}

t.test('the client sends back the boot id of its first reply, and a restart is a KcovdRestartedError', async (t) => {
  const a = await start('boot-A');
  const client = new KcovdClient({ url: a.url, connections: 1 });
  t.teardown(() => client.close());
  t.equal(client.boot, undefined, 'nothing known before the first reply');
  const k = client.kernel('default');
  const { fd } = await k.open(1);
  t.equal(client.boot, 'boot-A', 'taken from the first reply');
  await k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 64);
  t.same(a.sent, [undefined, 'boot-A'], 'sent back on every later request');

  // The service restarts on the same port.
  await a.app.close();
  const b = await start('boot-B', a.port);
  t.teardown(() => b.app.close());
  const err = await k.ioctl(fd, 'KCOV_ENABLE', 1, 'pc').then(() => null, (e: unknown) => e);
  t.ok(err instanceof KcovdRestartedError, `a KcovdRestartedError (${String(err)})`);
  t.ok(err instanceof KcovdError, 'which is a KcovdError');
  const e = err as KcovdRestartedError;
  t.equal(e.status, 412);
  t.equal(e.errno, 'ESTALE');
  t.equal(e.previousBoot, 'boot-A');
  t.equal(e.currentBoot, 'boot-B');
  t.match(e.message, /service restarted/);
  t.same((b.app.engine.kernel('default').descriptors.size), 0, 'the new start did nothing');

  client.forgetBoot();
  const d = await k.open(1);
  t.equal(client.boot, 'boot-B', 'after forgetBoot() the next reply names the start');
  t.equal(d.fd, fd, 'and fd numbers started over: exactly why the old client was stopped');
});

t.test('boot: false sends nothing; a pinned boot id is sent from the first request', async (t) => {
  const a = await start('boot-C');
  t.teardown(() => a.app.close());
  const loose = new KcovdClient({ url: a.url, boot: false, connections: 1 });
  t.teardown(() => loose.close());
  await loose.kernels();
  await loose.kernels();
  t.same(a.sent, [undefined, undefined]);
  t.equal(loose.boot, undefined);

  const pinned = new KcovdClient({ url: a.url, boot: 'boot-old', connections: 1 });
  t.teardown(() => pinned.close());
  const err = await pinned.kernels().then(() => null, (e: unknown) => e);
  t.ok(err instanceof KcovdRestartedError);
  t.equal((err as KcovdRestartedError).currentBoot, 'boot-C');
  const right = new KcovdClient({ url: a.url, boot: 'boot-C', connections: 1 });
  t.teardown(() => right.close());
  t.equal((await right.kernels()).length, 1, 'the right one is accepted');
});
