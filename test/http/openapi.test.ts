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

t.test('every operation: an operationId, the bearer scheme (none on the probes), problem+json errors, HTTP-level statuses', async (t) => {
  const app = await makeApp(t);
  const doc = json(await app.inject({ url: '/openapi.json' }));
  t.same(doc.components.securitySchemes.bearer.type, 'http');
  t.same(doc.security, [{ bearer: [] }]);
  t.ok(doc.info.license, 'a license');
  const ids = new Set<string>();
  for (const [path, item] of Object.entries<any>(doc.paths)) {
    for (const [method, op] of Object.entries<any>(item)) {
      const where = `${method.toUpperCase()} ${path}`;
      t.match(op.operationId, /^[a-z]+[A-Za-z0-9]*$/, `${where}: operationId`);
      t.notOk(ids.has(op.operationId), `${where}: operationId unique`);
      ids.add(op.operationId);
      const open = path === '/healthz' || path === '/readyz';
      if (open) t.same(op.security, [], `${where}: no token needed`);
      else t.equal(op.security, undefined, `${where}: the document's bearer scheme`);
      const statuses = Object.keys(op.responses).map(Number);
      for (const s of [400, 408, 412, 414, 431, ...(open ? [] : [401, 503]), ...(path.includes('{') ? [404] : [])]) {
        t.ok(statuses.includes(s), `${where}: ${s} documented`);
      }
      for (const [status, r] of Object.entries<any>(op.responses)) {
        t.not(r.description, 'Default Response', `${where} ${status}: described`);
        const s = Number(status);
        if (s >= 400 && !(path === '/readyz' && s === 503)) {
          const ref = String(r.$ref);
          t.match(ref, /^#\/components\/responses\//, `${where} ${status}: a shared problem response`);
          const shared = doc.components.responses[ref.split('/').pop()!];
          t.same(Object.keys(shared.content), ['application/problem+json'], `${where} ${status}: problem+json`);
          t.equal(shared.content['application/problem+json'].schema.$ref, '#/components/schemas/Problem');
        }
      }
    }
  }
  const cov = doc.paths['/v1/kernels/{kernel}/descriptors/{fd}/coverage'].get.responses;
  t.same(cov['200'].content['application/octet-stream'].schema, { ...cov['200'].content['application/octet-stream'].schema, type: 'string', format: 'binary', contentMediaType: 'application/octet-stream' });
  t.notOk(JSON.stringify(cov['200'].content['application/json'].schema).includes('"type":"string","format"'), 'JSON coverage is objects');
  t.ok(cov['304'], '304 Not Modified');
  t.ok(cov['200'].headers.etag, 'ETag');
  const events = doc.paths['/v1/kernels/{kernel}/threads/{tid}/events'].post;
  t.equal(events.requestBody.content['application/octet-stream'].schema.format, 'binary');
  t.ok(events.requestBody.content['application/json'].example, 'an example body');
  t.equal(doc.paths['/v1/kernels/{kernel}/threads/{tid}'].put.requestBody.required, false, 'a nullish body is optional');
});

/**
 * The statuses the server really gives, held against the document: each operation is sent
 * requests a client gets wrong (unknown ids, bad parameters, junk bodies, wrong media types,
 * an old boot id, no token) and every answer must be a status the document lists for it.
 */
t.test('what the routes answer is what the document lists', async (t) => {
  const token = 'conformance';
  const app = await makeApp(t, { KCOV_TOKEN: token });
  const auth = { authorization: `Bearer ${token}` };
  const doc = json(await app.inject({ url: '/openapi.json', headers: auth }));
  // One traced descriptor (fd 3, tid 1) so that valid paths reach the engine.
  const mk = (method: string, url: string, payload?: unknown) => app.inject({ method: method as 'POST', url, headers: auth, payload: payload as object });
  await mk('POST', '/v1/kernels/default/descriptors', { tid: 1 });
  await mk('POST', '/v1/kernels/default/descriptors/3/ioctl/KCOV_INIT_TRACE', { tid: 1, arg: 64 });
  const fill = (path: string, bad: boolean) => path
    .replace('{kernel}', bad ? 'no-such-kernel' : 'default').replace('{fd}', bad ? '99' : '3').replace('{tid}', bad ? '0' : '1')
    .replace('{cmd}', bad ? 'KCOV_BOGUS' : 'KCOV_ENABLE').replace('{remote}', bad ? 'zz' : '0x0100000000000001').replace('{n}', bad ? '77' : '0');
  let checked = 0;
  // Deletes last, so that the kernel and fd 3 are there for everything else.
  const ops = Object.entries<any>(doc.paths).flatMap(([path, item]) => Object.entries<any>(item).map(([method, op]) => ({ path, method, op })));
  ops.sort((a, b) => Number(a.method === 'delete') - Number(b.method === 'delete'));
  for (const { path, method, op } of ops) {
    {
      const allowed = new Set(Object.keys(op.responses).map(Number));
      const m = method.toUpperCase();
      const tries: Array<{ url: string; headers: Record<string, string>; payload?: string | Buffer }> = [];
      for (const bad of [false, true]) {
        tries.push(m === 'GET' ? { url: fill(path, bad), headers: auth } : { url: fill(path, bad), headers: { ...auth, 'content-type': 'application/json' }, payload: '{}' });
      }
      const url = fill(path, false);
      tries.push({ url, headers: {} });
      tries.push({ url, headers: { ...auth, 'if-kcovd-boot': 'another-boot' } });
      tries.push({ url: `${url}?bogus=1`, headers: auth });
      if (m !== 'GET') {
        tries.push({ url, headers: { ...auth, 'content-type': 'application/json' }, payload: '{"tid": "one"' });
        tries.push({ url, headers: { ...auth, 'content-type': 'text/csv' }, payload: 'a,b' });
        tries.push({ url, headers: { ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' }, payload: 'not gzip' });
        tries.push({ url, headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ tid: 1, arg: 'pc', pcs: ['0x1'] }) });
        // The document's own example, twice: the second often meets the state the first left (EBUSY, EEXIST).
        const example = op.requestBody?.content?.['application/json']?.example;
        if (example !== undefined) {
          const body = { url, headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify(example) };
          tries.push(body, body);
        }
      }
      for (const req of tries) {
        const res = await app.inject({ method: m as 'GET', url: req.url, headers: req.headers, payload: req.payload });
        checked++;
        t.ok(allowed.has(res.statusCode), `${m} ${req.url} ${JSON.stringify(req.headers).slice(0, 80)}: ${res.statusCode} is documented`, { allowed: [...allowed], body: res.body.slice(0, 200) });
        if (res.statusCode >= 400 && !(path === '/readyz')) t.match(String(res.headers['content-type']), /^application\/problem\+json/, `${m} ${req.url}: problem+json`);
      }
    }
  }
  t.ok(checked > 150, `${checked} requests`);
});
