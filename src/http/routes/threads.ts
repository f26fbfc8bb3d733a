import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import {
  EventReply, EventsQuery, JsonEvents, KernelParams, NoContent, SectionBody, ThreadList, ThreadPut, ThreadView, TidParams, problems,
} from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { eventReplyJson, eventSegments, eventsBody, eventsQuery, fastValidator, sendJson, tidParams } from '../fast.js';
import { BinaryBody } from '../plugins/docs.js';
import { threadView } from '../views.js';

export async function threadRoutes(app: FastifyInstance, opts: { engine: Engine }): Promise<void> {
  const { engine } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const base = '/v1/kernels/:kernel/threads';

  r.get(base, {
    schema: { tags: ['threads'], summary: 'threads', params: KernelParams, response: { 200: ThreadList, ...problems(404) } },
  }, async (req) => ({ threads: [...engine.kernel(req.params.kernel).threads.values()].map(threadView) }));

  r.get(`${base}/:tid`, {
    schema: { tags: ['threads'], summary: 'one thread', params: TidParams, response: { 200: ThreadView, ...problems(404) } },
  }, async (req) => threadView(engine.kernel(req.params.kernel).findThread(req.params.tid)));

  r.put(`${base}/:tid`, {
    schema: {
      tags: ['threads'],
      summary: 'create a thread (fork/clone); 200 with the thread when it already exists in the same process',
      params: TidParams,
      body: ThreadPut.nullish(),
      response: { 200: ThreadView, 201: ThreadView, ...problems(400, 404, 409, 507) },
    },
  }, async (req, reply) => {
    const { thread, created } = engine.kernel(req.params.kernel).createThread(req.params.tid, req.body?.pid, req.body?.parent);
    return reply.code(created ? 201 : 200).send(threadView(thread));
  });

  r.delete(`${base}/:tid`, {
    schema: {
      tags: ['threads'],
      summary: "thread exit, with the dialect's exit hook (auto-disable, free of dying descriptors)",
      params: TidParams,
      response: { 204: NoContent, ...problems(404) },
    },
  }, async (req, reply) => {
    engine.kernel(req.params.kernel).exitThread(req.params.tid);
    return reply.code(204).send();
  });

  r.post(`${base}/:tid/remote`, {
    schema: {
      tags: ['threads', 'remotes'],
      summary: 'enter a remote section on this thread (kcov_remote_start / kcov_remote_enter)',
      description: 'The section stays open until DELETE; the thread\'s events go where the dialect sends them meanwhile.',
      params: TidParams,
      body: SectionBody,
      response: { 200: ThreadView, ...problems(400, 404, 409, 501, 507) },
    },
  }, async (req) => threadView(engine.kernel(req.params.kernel).remotes.enterThreadSection(req.params.tid, req.body)));

  r.delete(`${base}/:tid/remote`, {
    schema: {
      tags: ['threads', 'remotes'],
      summary: 'leave the remote section (kcov_remote_stop / kcov_remote_leave)',
      params: TidParams,
      response: { 200: ThreadView, ...problems(400, 404, 409, 501) },
    },
  }, async (req) => threadView(engine.kernel(req.params.kernel).remotes.leaveThreadSection(req.params.tid)));

  r.put(`${base}/:tid/silence`, {
    schema: {
      tags: ['threads'],
      summary: 'NetBSD kcov_silence_enter',
      params: TidParams,
      response: { 200: ThreadView, ...problems(404, 501, 507) },
    },
  }, async (req) => threadView(engine.kernel(req.params.kernel).remotes.silence(req.params.tid, true)));

  r.delete(`${base}/:tid/silence`, {
    schema: {
      tags: ['threads'],
      summary: 'NetBSD kcov_silence_leave',
      description: 'kd->silenced is a bool on the LWP\'s l_kcov: enters do not nest, a leave without an enter is a no-op, and a thread without an enabled kcov (or remote section) changes nothing.',
      params: TidParams,
      response: { 200: ThreadView, ...problems(404, 501) },
    },
  }, async (req) => threadView(engine.kernel(req.params.kernel).remotes.silence(req.params.tid, false)));

  r.post(`${base}/:tid/events`, {
    schema: {
      tags: ['threads'],
      summary: 'a batch of instrumentation events executed by this thread, in order',
      description:
        'application/octet-stream: packed little-endian words, `?kind=pc` (1 word a record) or `?kind=cmp` ' +
        '(4 words: type, arg1, arg2, pc); a body that is not whole records is rejected (EINVAL) and nothing is stored. ' +
        'application/json: lists `pcs`, `sites` (FNV-1a-64 of the string), `cmps`, `switches` (one const comparison per case), ' +
        'applied in the order their keys appear. The batch applies atomically once the body is complete.',
      params: TidParams,
      querystring: EventsQuery,
      body: {
        content: {
          'application/json': { schema: JsonEvents },
          'application/octet-stream': { schema: BinaryBody.describe('packed records: PCs, or type/arg1/arg2/pc quadruples') },
        },
      },
      response: { 200: EventReply, ...problems(400, 404, 413, 415, 507) },
    },
    // The hot path: fast checks in front of zod (which notes the body's key order), a pre-encoded reply.
    validatorCompiler: fastValidator({ params: tidParams, querystring: eventsQuery, body: eventsBody }, { bodyKeyOrder: true }),
  }, (req, reply) => {
    // Sync: no promise, no thenable reply.
    const k = engine.kernel(req.params.kernel);
    sendJson(reply, eventReplyJson(k.eventsSegments(req.params.tid, eventSegments(req, req.query.kind))));
  });
}
