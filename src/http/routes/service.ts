import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { AppState } from '../app.js';

const Health = z.object({ status: z.literal('ok') });
const Ready = z.object({ ready: z.boolean(), draining: z.boolean() });

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
    return reply.code(draining ? 503 : 200).send({ ready: !draining, draining });
  });

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
