import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import {
  JsonEvents, KernelParams, NoContent, RemoteEventReply, RemoteEventsQuery, RemoteList, RemoteParams, RemoteRegistered, problems,
} from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { fail } from '../../engine/errno.js';
import { waitOut } from '../barrier.js';
import { noteKeyOrder } from '../plugins/binary.js';
import { binaryBody, eventSegments, fastValidator, sendJson } from '../fast.js';
import { BinaryBody } from '../plugins/docs.js';

export async function remoteRoutes(app: FastifyInstance, opts: { engine: Engine; barrierMs?: number }): Promise<void> {
  const { engine } = opts;
  const barrierMs = opts.barrierMs ?? 1000;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/v1/kernels/:kernel/remotes';

  r.get(base, {
    schema: { tags: ['remotes'], summary: 'every remote with its attachment: descriptor, mode, open sections', params: KernelParams, response: { 200: RemoteList, ...problems(404) } },
  }, async (req) => ({ remotes: engine.kernel(req.params.kernel).remotes.view() as Record<string, unknown>[] }));

  r.put(`${base}/:remote`, {
    schema: {
      tags: ['remotes'],
      summary: 'the kernel side registers a remote (BSD kcov_remote_register); 201 when new, 200 when already there',
      params: RemoteParams,
      response: { 200: RemoteRegistered, 201: RemoteRegistered, ...problems(400, 404, 409, 501, 507) },
    },
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    const created = k.remotes.register(req.params.remote);
    return reply.code(created ? 201 : 200).send({ remote: k.remotes.key(req.params.remote), created });
  });

  r.delete(`${base}/:remote`, {
    schema: {
      tags: ['remotes'],
      summary: 'the kernel side unregisters a remote (BSD kcov_remote_unregister)',
      description:
        'ENOENT when no such remote. OpenBSD kr_free waits (kr_barrier) for open sections of the remote; after ' +
        'KCOV_BARRIER_TIMEOUT_MS (default 1000) it fails with ETIMEDOUT (409) and the remote stays. ' +
        'NetBSD has no kcov_remote_unregister; here it is refused with EBUSY while an fd is attached or a section is open.',
      params: RemoteParams,
      response: { 204: NoContent, ...problems(400, 404, 409, 501) },
    },
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    await waitOut(k, barrierMs, () => k.remotes.unregister(req.params.remote));
    return reply.code(204).send();
  });

  r.post(`${base}/:remote/events`, {
    schema: {
      tags: ['remotes'],
      summary: 'one whole remote section (enter, the events, leave) in one request',
      description:
        '`?context=task&tid=N` runs it on thread N; `?context=softirq&cpu=N` (Linux) or `?context=interrupt&cpu=N` (OpenBSD) ' +
        'on that CPU\'s own area, interrupting thread `tid` if given. A remote that is not registered makes the section a no-op ' +
        '(everything ignored). Bodies as for thread events; `count` is the section area\'s count at leave. ' +
        'NetBSD: task context only (EOPNOTSUPP otherwise: it traces nothing in interrupts); an unregistered remote is ENOENT ' +
        '(kcov_remote_enter panics) and a remote already entered EBUSY (KASSERT(refs == 1)); the section writes the ' +
        'remote\'s shared buffer only if the remote was enabled at enter.',
      params: RemoteParams,
      querystring: RemoteEventsQuery,
      body: {
        content: {
          'application/json': { schema: JsonEvents },
          'application/octet-stream': { schema: BinaryBody },
        },
      },
      response: { 200: RemoteEventReply, ...problems(400, 404, 409, 413, 415, 501, 507) },
    },
    preValidation: noteKeyOrder,
    validatorCompiler: fastValidator({ body: binaryBody }),
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    const q = req.query;
    const decode = () => eventSegments(req, q.kind);
    if (q.context === 'task') {
      if (q.tid === undefined) fail('EINVAL', 'context=task needs tid');
      if (q.cpu !== undefined) fail('EINVAL', 'context=task takes tid, not cpu');
      // Not a hot path, and the reply carries the dialect's extra fields (Linux `moved`).
      return sendJson(reply, JSON.stringify(k.remotes.oneShot(req.params.remote, { context: 'task', tid: q.tid }, decode)));
    }
    if (q.cpu === undefined) fail('EINVAL', `context=${q.context} needs cpu`);
    return sendJson(reply, JSON.stringify(k.remotes.oneShot(req.params.remote, { context: q.context, cpu: q.cpu, tid: q.tid }, decode)));
  });
}
