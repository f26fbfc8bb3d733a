/**
 * The live dashboard: GET /ui (one HTML page, its script and style, uPlot read
 * from node_modules and served from here; no CDN) and GET /v1/history, the
 * bounded coverage-over-time history the page charts (see history.ts).
 *
 * The page's static assets hold no data and no secret, so they are open routes
 * like /healthz: a browser can load them when KCOV_TOKEN is set. Everything the
 * page shows comes from /v1 routes, which it calls with `Authorization: Bearer`
 * (the token is asked for on the page on the first 401).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { problems } from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { OPEN_ROUTES } from '../plugins/auth.js';
import { CoverageHistory } from './history.js';
import { APP_JS, INDEX_HTML, STYLE_CSS } from './page.js';
import { HistoryQuery, HistoryReply } from './schema.js';

export interface UiOptions {
  engine: Engine;
  /** KCOV_UI_HISTORY: samples held. */
  points: number;
  /** KCOV_UI_SAMPLE_MS: sampling period; 0 = no history. */
  sampleMs: number;
  /** KCOV_MAX_WAIT: longest long-poll. */
  maxWait: number;
}

const require = createRequire(import.meta.url);

/** uPlot's own build, read once per process. */
let uplot: { js: Buffer; css: Buffer } | null = null;
function uplotAssets(): { js: Buffer; css: Buffer } {
  uplot ??= {
    js: readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js')),
    css: readFileSync(require.resolve('uplot/dist/uPlot.min.css')),
  };
  return uplot;
}

/** Static files of the page, by route. */
const ASSETS: Record<string, { type: string; body: () => string | Buffer }> = {
  '/ui': { type: 'text/html; charset=utf-8', body: () => INDEX_HTML },
  '/ui/app.js': { type: 'text/javascript; charset=utf-8', body: () => APP_JS },
  '/ui/style.css': { type: 'text/css; charset=utf-8', body: () => STYLE_CSS },
  '/ui/uplot.js': { type: 'text/javascript; charset=utf-8', body: () => uplotAssets().js },
  '/ui/uplot.css': { type: 'text/css; charset=utf-8', body: () => uplotAssets().css },
};

/** Only this origin's own files and API; no inline script or style, no framing. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export async function uiRoutes(app: FastifyInstance, opts: UiOptions): Promise<void> {
  const history = new CoverageHistory(opts.engine, { points: opts.points, sampleMs: opts.sampleMs });
  app.decorate('coverageHistory', history);
  for (const path of [...Object.keys(ASSETS), '/ui/']) OPEN_ROUTES.add(path);
  app.get('/ui/', { schema: { hide: true } }, async (_req, reply) => reply.redirect('/ui', 308));

  for (const [path, asset] of Object.entries(ASSETS)) {
    let etag: string | null = null;
    app.get(path, { schema: { hide: true } }, async (req, reply: FastifyReply) => {
      const body = asset.body();
      // The same bytes for the life of the process: a reload revalidates and gets 304.
      etag ??= `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
      reply
        .header('content-type', asset.type)
        .header('cache-control', 'no-cache')
        .header('etag', etag)
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', CSP);
      if (req.headers['if-none-match'] === etag) return reply.code(304).send();
      return reply.send(body);
    });
  }

  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/v1/history', {
    schema: {
      tags: ['coverage'],
      summary: 'coverage over time: sampled counts of every kernel and descriptor (the dashboard\'s chart)',
      description:
        'Every KCOV_UI_SAMPLE_MS (default 1000) the service samples the count of each descriptor and their sum per kernel, ' +
        'when something moved since the last sample. At most KCOV_UI_HISTORY (default 512) samples are held; past that ' +
        'every other one is dropped, so the history spans the whole run at a coarser step. Its memory is charged to ' +
        'KCOV_MEMORY_LIMIT; what does not fit is counted in `untracked`. `?after=SEQ` returns only newer samples; with ' +
        '`?wait=MS` the request waits (at most KCOV_MAX_WAIT) until there is one. An `after` other than the newest ' +
        '`seq` answers at once.',
      querystring: HistoryQuery,
      response: { 200: HistoryReply, ...problems(400) },
    },
  }, async (req) => {
    const after = req.query.after ?? 0;
    await history.wait(after, Math.min(req.query.wait ?? 0, opts.maxWait), req.raw);
    return history.since(after);
  });

  app.addHook('onReady', async () => history.start());
  app.addHook('preClose', async () => history.close());
}

// Not encapsulated (what fastify-plugin does): app.coverageHistory is seen from the root.
(uiRoutes as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;

declare module 'fastify' {
  interface FastifyInstance {
    coverageHistory: CoverageHistory;
  }
}
