import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CountBody, CountReply, CoverageJson, CoverageQuery, FdParams, problems } from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { coverageJsonBuffer, coverageTextBuffer, negotiate, parseRange } from '../codecs/coverage.js';
import { countBody, coverageQuery, fastValidator, fdParams, sendJson } from '../fast.js';
import { BinaryBody } from '../plugins/docs.js';
import { sendProblem } from '../plugins/errors.js';
import { SnapshotPool } from '../codecs/snapshot-pool.js';
import type { Fleet } from '../../fleet/fleet.js';
import { newCoverageReply } from './cover.js';

export async function coverageRoutes(app: FastifyInstance, opts: { engine: Engine; fleet?: Fleet | null }): Promise<void> {
  const { engine } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const pool = new SnapshotPool();
  const path = '/v1/kernels/:kernel/descriptors/:fd/coverage';

  r.get(path, {
    schema: {
      tags: ['coverage'],
      summary: 'the area as userspace sees it through mmap',
      description:
        'Accept: application/octet-stream gives the whole area (words × 8 bytes, word 0 the count) and honours a single ' +
        '`Range: bytes=a-b` (206; 416 when unsatisfiable). application/json (the default) gives the records; text/plain ' +
        'one `0x…` PC a line (CMP: `type arg1 arg2 pc`). The count word is shown as stored; records shown are ' +
        'min(count, capacity). Before the buffer exists the dialect\'s mmap errno is returned. ' +
        'Long-poll: `?wait=MS&since=N` answers as soon as the count word differs from N (the count at arrival when ' +
        '`since` is absent), or after MS milliseconds (capped at KCOV_MAX_WAIT) with the area unchanged.',
      params: FdParams,
      querystring: CoverageQuery,
      response: {
        200: {
          description: 'the area',
          content: {
            'application/json': { schema: CoverageJson },
            'application/octet-stream': { schema: BinaryBody.describe('the whole area, little-endian words') },
            'text/plain': { schema: z.string().describe('rawcover lines') },
          },
        },
        206: { description: 'part of the area', content: { 'application/octet-stream': { schema: BinaryBody } } },
        ...problems(400, 404, 416, 507),
      },
    },
    validatorCompiler: fastValidator({ params: fdParams, querystring: coverageQuery }),
  }, async (req, reply) => {
    await app.longPoll.waitForChange(engine, req.params.kernel, req.params.fd, req.query.wait, req.query.since, reply.raw);
    const k = engine.kernel(req.params.kernel);
    const d = k.descriptor(req.params.fd);
    const m = k.mapping(d);
    const format = req.query.format ?? negotiate(req.headers.accept);
    const mode = req.query.mode ?? m.mode;
    const reset = req.query.reset === 'true' || req.query.reset === '1';
    if (req.query.new === 'true' || req.query.new === '1') return newCoverageReply(opts.fleet ?? null, reply, k, d, m, format, mode, reset);
    // Every format is encoded from the area at this instant, before any reset.
    let payload: Buffer;
    if (format === 'binary') {
      const snap = pool.copy(m.area.bytes);
      // 'finish': the whole body is with the OS, so the buffer may be reused. An aborted
      // response ('close' without 'finish') leaves it to the GC instead.
      reply.raw.once('finish', () => pool.release(snap));
      payload = snap;
    } else if (format === 'json') {
      payload = coverageJsonBuffer(m.trace, mode);
    } else {
      payload = coverageTextBuffer(m.trace, mode);
    }
    if (reset) k.resetCoverage(d);
    if (format === 'json') return reply.header('content-type', 'application/json; charset=utf-8').send(payload);
    if (format === 'text') return reply.header('content-type', 'text/plain; charset=utf-8').send(payload);
    const buf = payload as Buffer;
    reply.header('accept-ranges', 'bytes').type('application/octet-stream');
    const range = parseRange(req.headers.range, buf.length);
    if (range === 'unsatisfiable') {
      reply.header('content-range', `bytes */${buf.length}`);
      return sendProblem(engine, req, reply, 'EINVAL', `Range ${req.headers.range} is outside the ${buf.length}-byte area`, 416);
    }
    if (range === null) return reply.send(buf);
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${buf.length}`);
    return reply.send(buf.subarray(range.start, range.end + 1));
  });

  r.put(`${path}/count`, {
    schema: {
      tags: ['coverage'],
      summary: 'write the count word, as userspace does with cover[0] = n',
      params: FdParams,
      body: CountBody,
      response: { 200: CountReply, ...problems(400, 404, 507) },
    },
    validatorCompiler: fastValidator({ params: fdParams, body: countBody }),
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    const m = k.setCount(k.descriptor(req.params.fd), req.body.count);
    return sendJson(reply, `{"count":${m.trace.count},"words":${m.trace.words}}`);
  });
}
