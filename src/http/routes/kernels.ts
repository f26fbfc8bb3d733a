import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { KernelCreate, KernelList, KernelParams, KernelView, NoContent, problems } from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import type { Kernel } from '../../engine/kernel.js';
import { kernelView } from '../views.js';

export async function kernelRoutes(app: FastifyInstance, opts: { engine: Engine; bootId: string }): Promise<void> {
  const { engine, bootId } = opts;
  const view = (k: Kernel) => kernelView(k, bootId);
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/v1/kernels', {
    schema: { tags: ['kernels'], summary: 'list kernels', response: { 200: KernelList } },
  }, async () => {
    engine.settleFreed();
    return {
      kernels: [...engine.kernels.values()].map(view),
      memory: { used: engine.budget.used, limit: engine.budget.limit, by: engine.budget.breakdown() },
    };
  });

  r.post('/v1/kernels', {
    schema: {
      tags: ['kernels'],
      summary: 'create a kernel of a dialect',
      body: KernelCreate,
      response: { 201: KernelView, ...problems(400, 409, 501, 507) },
    },
  }, async (req, reply) => {
    const k = engine.createKernel({ name: req.body.name, dialect: req.body.dialect, ncpus: req.body.ncpus, maxEntries: req.body.max_entries, config: req.body.config, corpus: req.body.corpus });
    return reply.code(201).send(view(k));
  });

  r.get('/v1/kernels/:kernel', {
    schema: { tags: ['kernels'], summary: 'one kernel', params: KernelParams, response: { 200: KernelView, ...problems(404) } },
  }, async (req) => {
    engine.settleFreed();
    return view(engine.kernel(req.params.kernel));
  });

  r.delete('/v1/kernels/:kernel', {
    schema: { tags: ['kernels'], summary: 'tear a kernel down with everything in it', params: KernelParams, response: { 204: NoContent, ...problems(404) } },
  }, async (req, reply) => {
    engine.deleteKernel(req.params.kernel);
    return reply.code(204).send();
  });
}
