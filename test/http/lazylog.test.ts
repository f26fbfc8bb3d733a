/**
 * req.log makes its pino child on the first line written: requests that log
 * nothing make none, and a line that is written carries the request's reqId.
 */
import { Writable } from 'node:stream';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';

t.test('no child logger per request; a written line has its reqId', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '1' }), logger: { level: 'info', stream } });
  let children = 0;
  const child = app.log.child.bind(app.log);
  app.log.child = ((...a: Parameters<typeof child>) => (children++, child(...a))) as typeof child;
  app.get('/t/log', async (req) => {
    req.log.debug('off: nothing made');
    req.log.info({ n: 1 }, 'written');
    return { ok: true };
  });
  await app.ready();
  t.teardown(() => app.close());
  for (let i = 0; i < 5; i++) t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  t.equal(children, 0, 'five requests, no child made');
  const res = await app.inject({ method: 'GET', url: '/t/log', headers: { 'x-request-id': 'lazy-1' } });
  t.equal(res.statusCode, 200);
  t.equal(children, 1, 'one child, for the request that wrote a line');
  const written = lines.filter((l) => l.msg === 'written');
  t.equal(written.length, 1);
  t.equal(written[0]!.reqId, 'lazy-1');
  t.equal(written[0]!.n, 1);
  t.equal(lines.filter((l) => l.msg === 'off: nothing made').length, 0);
  t.equal(lines.filter((l) => l.msg === 'incoming request').length, 0, 'request lines are off by default (KCOV_LOG_REQUESTS)');
});
