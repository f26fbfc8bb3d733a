import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AppState } from '../app.js';

const Health = z.object({ status: z.literal('ok') });
const Fleet = z.object({
  kind: z.string(),
  connected: z.boolean().describe('false: Redis unreachable; the service serves from its local unions and merges once it is back'),
  error: z.string().nullable(),
  pending: z.number().int().describe('PCs and signals learnt here and not yet in Redis'),
  lagSeconds: z.number().describe('age of the oldest pending one'),
  roundTrips: z.number().int(),
  roundTripSeconds: z.number().describe('time those round trips took, together'),
  failures: z.number().int(),
  resets: z.number().int().describe('fleet-wide resets (DELETE /cover on another instance) that emptied a union here'),
}).describe('KCOV_FLEET_URL only');
const Ready = z.object({ ready: z.boolean(), draining: z.boolean(), fleet: Fleet.optional() });

export async function serviceRoutes(app: FastifyInstance, opts: { state: AppState }): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/healthz', {
    schema: { tags: ['service'], summary: 'liveness: the process answers', response: { 200: Health } },
  }, async () => ({ status: 'ok' as const }));

  r.get('/readyz', {
    schema: {
      tags: ['service'],
      summary: 'readiness: false (503) while draining for shutdown',
      response: { 200: Ready, 503: Ready },
    },
  }, async (_req, reply) => {
    const draining = opts.state.draining;
    const fleet = opts.state.fleet?.status();
    return reply.code(draining ? 503 : 200).send(fleet === undefined ? { ready: !draining, draining } : { ready: !draining, draining, fleet });
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
