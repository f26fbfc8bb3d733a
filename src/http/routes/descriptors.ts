import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import {
  DescriptorList, DescriptorOpen, DescriptorView, FdParams, IoctlBody, IoctlParams, IoctlReply, KernelParams, NoContent, ioctlTableText, problems,
} from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { waitOut } from '../barrier.js';
import { fastValidator, fdParams, ioctlBody, ioctlParams, sendJson } from '../fast.js';
import { descriptorView } from '../views.js';

export async function descriptorRoutes(app: FastifyInstance, opts: { engine: Engine; barrierMs?: number }): Promise<void> {
  const { engine } = opts;
  const barrierMs = opts.barrierMs ?? 1000;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/v1/kernels/:kernel/descriptors';

  r.post(base, {
    schema: {
      tags: ['descriptors'],
      summary: 'open the kcov device',
      body: DescriptorOpen.nullish(),
      params: KernelParams,
      response: { 201: DescriptorView, ...problems(400, 404, 507) },
    },
  }, async (req, reply) => {
    const d = engine.kernel(req.params.kernel).open(req.body?.tid);
    return reply.code(201).send(descriptorView(d));
  });

  r.get(base, {
    schema: { tags: ['descriptors'], summary: 'open descriptors', params: KernelParams, response: { 200: DescriptorList, ...problems(404) } },
  }, async (req) => ({ descriptors: [...engine.kernel(req.params.kernel).descriptors.values()].map(descriptorView) }));

  r.get(`${base}/:fd`, {
    schema: { tags: ['descriptors'], summary: 'state of one descriptor', params: FdParams, response: { 200: DescriptorView, ...problems(404) } },
    validatorCompiler: fastValidator({ params: fdParams }),
  }, (req, reply) => {
    reply.send(descriptorView(engine.kernel(req.params.kernel).descriptor(req.params.fd)));
  });

  r.delete(`${base}/:fd`, {
    schema: {
      tags: ['descriptors'],
      summary: "close, with the dialect's close semantics (a descriptor a thread still traces lives until that thread lets go)",
      description:
        'freebsd: closing a RUNNING descriptor is 204 like any close: close(2) releases the fd even when kcov_close answers EBUSY; ' +
        'the descriptor turns DYING, records nothing more and is freed at its thread\'s exit (kcov_thread_dtor). ' +
        'OpenBSD: closing a descriptor with a remote attached frees the remote, which waits (kr_barrier) for sections opened ' +
        'with POST /threads/{tid}/remote to close; after KCOV_BARRIER_TIMEOUT_MS (default 1000) it fails with ETIMEDOUT (409) and the fd stays open.',
      params: FdParams,
      response: { 204: NoContent, ...problems(404, 409) },
    },
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    await waitOut(k, barrierMs, () => k.close(req.params.fd));
    return reply.code(204).send();
  });

  r.post(`${base}/:fd/ioctl/:cmd`, {
    schema: {
      tags: ['descriptors'],
      summary: 'issue an ioctl as thread tid',
      description:
        ioctlTableText() + ' ' +
        'freebsd: int arguments by value, only their low 32 bits reach the driver. ' +
        'openbsd: an arg of null is a NULL pointer (EFAULT). KIODISABLE of a descriptor ' +
        'with a remote waits (kr_barrier) for sections opened with POST /threads/{tid}/remote to close; after KCOV_BARRIER_TIMEOUT_MS ' +
        '(default 1000) it fails with ETIMEDOUT (409) and nothing changes.',
      params: IoctlParams,
      body: IoctlBody,
      response: { 200: IoctlReply, ...problems(400, 403, 404, 409, 501, 507) },
    },
    validatorCompiler: fastValidator({ params: ioctlParams, body: ioctlBody }),
  }, (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    const done = waitOut(k, barrierMs, () => k.ioctl(req.params.fd, req.params.cmd, req.body.tid, req.body.arg));
    // IoctlReply is {ret, descriptor} with a catch-all descriptor: zod's encode would hand back the same object.
    const send = ({ ret, descriptor }: Awaited<typeof done>): void => {
      sendJson(reply, `{"ret":${ret},"descriptor":${JSON.stringify(descriptorView(descriptor))}}`);
    };
    // Sync unless the ioctl waits on a barrier: no promise, no thenable reply.
    if (done instanceof Promise) return done.then(send);
    send(done);
    return undefined;
  });
}
