import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CpuList, CpuView, KernelParams, problems } from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import type { Cpu } from '../../engine/model.js';
import { sectionView } from '../views.js';

function cpuView(c: Cpu) {
  return {
    cpu: c.id,
    words: c.area === null ? null : c.area.words,
    count: c.area === null ? null : c.area.count,
    section: sectionView(c.section),
  };
}

export async function cpuRoutes(app: FastifyInstance, opts: { engine: Engine }): Promise<void> {
  const { engine } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/v1/kernels/:kernel/cpus', {
    schema: { tags: ['cpus'], summary: 'per-CPU areas and their state', params: KernelParams, response: { 200: CpuList, ...problems(404) } },
  }, async (req) => ({ cpus: engine.kernel(req.params.kernel).cpus.map(cpuView) }));

  r.get('/v1/kernels/:kernel/cpus/:n', {
    schema: {
      tags: ['cpus'],
      summary: 'one CPU',
      params: KernelParams.extend({ n: z.coerce.number().int().min(0).max(4096) }),
      response: { 200: CpuView, ...problems(404) },
    },
  }, async (req) => {
    return cpuView(engine.kernel(req.params.kernel).cpu(req.params.n));
  });
}
