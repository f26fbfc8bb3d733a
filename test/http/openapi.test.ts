import t from 'tap';
import { readFileSync } from 'node:fs';
import { OPENAPI_PATH } from '../../scripts/gen-openapi.js';
import { json, makeApp } from '../helpers.js';

t.test('the committed openapi/openapi.json is what the server serves (npm run openapi regenerates it)', async (t) => {
  const app = await makeApp(t);
  const served = json(await app.inject({ url: '/openapi.json' }));
  const committed = JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'));
  t.same(served, committed, 'drift: run `npm run openapi` and commit the result');
});

t.test('the document covers the contract routes with problem responses', async (t) => {
  const app = await makeApp(t);
  const doc = json(await app.inject({ url: '/openapi.json' }));
  t.equal(doc.openapi, '3.1.0');
  for (const path of [
    '/v1/kernels', '/v1/kernels/{kernel}', '/v1/kernels/{kernel}/descriptors', '/v1/kernels/{kernel}/descriptors/{fd}',
    '/v1/kernels/{kernel}/descriptors/{fd}/ioctl/{cmd}', '/v1/kernels/{kernel}/descriptors/{fd}/coverage',
    '/v1/kernels/{kernel}/descriptors/{fd}/coverage/count', '/v1/kernels/{kernel}/threads', '/v1/kernels/{kernel}/threads/{tid}',
    '/v1/kernels/{kernel}/threads/{tid}/events', '/v1/kernels/{kernel}/threads/{tid}/remote', '/v1/kernels/{kernel}/threads/{tid}/silence',
    '/v1/kernels/{kernel}/remotes', '/v1/kernels/{kernel}/remotes/{remote}', '/v1/kernels/{kernel}/remotes/{remote}/events',
    '/v1/kernels/{kernel}/cpus', '/v1/kernels/{kernel}/cpus/{n}', '/healthz', '/readyz',
  ]) {
    t.ok(doc.paths[path], path);
  }
  const events = doc.paths['/v1/kernels/{kernel}/threads/{tid}/events'].post;
  t.same(Object.keys(events.requestBody.content).sort(), ['application/json', 'application/octet-stream']);
  t.ok(doc.components.schemas.Problem, 'Problem schema');
  const docs = await app.inject({ url: '/docs/' });
  t.equal(docs.statusCode, 200, 'interactive docs');
});
