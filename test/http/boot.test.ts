/**
 * Additions (API.md): every reply carries `kcovd-boot`; a request whose
 * `if-kcovd-boot` names another start of the service is 412 ESTALE and
 * changes nothing.
 */
import t from 'tap';
import { buildApp } from '../../src/http/app.js';
import { loadConfig } from '../../src/config.js';
import { expectProblem, json, makeApp } from '../helpers.js';

t.test('every reply carries kcovd-boot, errors and unknown routes included', async (t) => {
  const app = await makeApp(t);
  const ok = await app.inject({ method: 'GET', url: '/healthz' });
  const boot = ok.headers['kcovd-boot'];
  t.type(boot, 'string');
  t.ok(String(boot).length >= 16, 'an id, not a counter');
  const missing = await app.inject({ method: 'GET', url: '/v1/kernels/nope' });
  t.equal(missing.headers['kcovd-boot'], boot, 'on a 404 problem too');
  const unknown = await app.inject({ method: 'GET', url: '/no/such/route' });
  t.equal(unknown.headers['kcovd-boot'], boot, 'on an unknown route');
  const k = json(await app.inject({ method: 'GET', url: '/v1/kernels/default' }));
  t.equal(k.boot, boot, 'kernel views name the boot');
});

t.test('two starts have two boot ids', async (t) => {
  const a = await makeApp(t);
  const b = await makeApp(t);
  const ha = (await a.inject({ method: 'GET', url: '/healthz' })).headers['kcovd-boot'];
  const hb = (await b.inject({ method: 'GET', url: '/healthz' })).headers['kcovd-boot'];
  t.not(ha, hb);
});

t.test('if-kcovd-boot of another start: 412 ESTALE, nothing changes', async (t) => {
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2' }), bootId: 'boot-now' });
  await app.ready();
  t.teardown(() => app.close());
  const stale = await app.inject({
    method: 'POST',
    url: '/v1/kernels/default/descriptors',
    headers: { 'if-kcovd-boot': 'boot-before' },
    payload: { tid: 1 },
  });
  expectProblem(t, stale, 412, 'ESTALE');
  t.equal(json(stale).code, 116, 'Linux ESTALE');
  t.equal(stale.headers['kcovd-boot'], 'boot-now', 'the refusal says which boot this is');
  const k = json(await app.inject({ method: 'GET', url: '/v1/kernels/default' }));
  t.equal(k.descriptors, 0, 'no descriptor was opened');
  const same = await app.inject({
    method: 'POST',
    url: '/v1/kernels/default/descriptors',
    headers: { 'if-kcovd-boot': 'boot-now' },
    payload: { tid: 1 },
  });
  t.equal(same.statusCode, 201, 'the current boot id is accepted');
});
