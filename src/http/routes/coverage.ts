import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CountBody, CountReply, CoverageJson, CoverageQuery, FdParams, NoContent, problems } from '../../../schemas/index.js';
import type { Engine } from '../../engine/engine.js';
import { coverageJsonBuffer, coverageStream, coverageTextBuffer, negotiate, parseRange, STREAM_RECORDS, streamCopyBytes } from '../codecs/coverage.js';
import { strideOf } from '../../engine/area.js';
import { chargeSnapshot, sendBusy, SNAPSHOT_CHARGE_MIN } from '../plugins/limits.js';
import { countBody, coverageQuery, fastValidator, fdParams, sendJson } from '../fast.js';
import { BinaryBody } from '../plugins/docs.js';
import { sendProblem } from '../plugins/errors.js';
import { SnapshotPool } from '../codecs/snapshot-pool.js';
import { areaTag, noneMatch } from '../plugins/etag.js';
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
        304: NoContent.describe('Not Modified: If-None-Match names the ETag the area has now (never with ?reset=true)'),
        ...problems(400, 404, 416, 507),
      },
    },
    validatorCompiler: fastValidator({ params: fdParams, querystring: coverageQuery }),
  }, (req, reply) => {
    // Sync unless it long-polls: no promise and no thenable reply for Fastify to wait on.
    const wait = req.query.wait;
    if (wait !== undefined && wait > 0) {
      return app.longPoll.waitForChange(engine, req.params.kernel, req.params.fd, wait, req.query.since, reply.raw).then(() => snapshot(req, reply));
    }
    const r = snapshot(req, reply);
    return r instanceof Promise ? r : undefined;
  });

  type SnapshotReq = { params: { kernel: string; fd: number }; query: { format?: 'binary' | 'json' | 'text'; mode?: 'pc' | 'cmp'; reset?: string; new?: string }; headers: FastifyRequest['headers'] };
  const snapshot = (req: SnapshotReq & FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> => {
    const k = engine.kernel(req.params.kernel);
    const d = k.descriptor(req.params.fd);
    const m = k.mapping(d);
    const format = req.query.format ?? negotiate(req.headers.accept);
    const mode = req.query.mode ?? m.mode;
    const reset = req.query.reset === 'true' || req.query.reset === '1';
    if (req.query.new === 'true' || req.query.new === '1') return newCoverageReply(opts.fleet ?? null, reply, k, d, m, format, mode, reset);
    // The tag of what this reply is made of; a read with a side effect (reset) is never 304.
    const tag = format === 'binary' ? areaTag(m.area.stamp, 'b') : areaTag(m.trace.stamp, `${format === 'json' ? 'j' : 't'}${mode}${m.trace.words}`);
    reply.header('etag', tag);
    if (!reset && noneMatch(req.headers['if-none-match'], tag)) return reply.code(304).send();
    // Every format is encoded from the area at this instant, before any reset. A large
    // snapshot is a copy charged to KCOV_MEMORY_LIMIT until its reply is over; past the
    // budget it is 503 EBUSY (retry once other snapshots are read).
    if (format !== 'binary') {
      const type = format === 'json' ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8';
      if (m.trace.visible(strideOf(mode)) <= STREAM_RECORDS) {
        const payload = format === 'json' ? coverageJsonBuffer(m.trace, mode) : coverageTextBuffer(m.trace, mode);
        if (reset) k.resetCoverage(d);
        return reply.header('content-type', type).send(payload);
      }
      const copied = streamCopyBytes(m.trace, mode);
      const bytes = copied >= SNAPSHOT_CHARGE_MIN ? copied : 0;
      const refused = bytes === 0 ? null : chargeSnapshot(engine, bytes);
      if (refused !== null) return sendBusy(engine, req, reply, refused);
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        engine.budget.release(bytes, 'snapshots');
      };
      const stream = coverageStream(m.trace, mode, format, release);
      // The reader left early: stop encoding, drop the copy.
      reply.raw.once('close', () => {
        if (!stream.destroyed) stream.destroy();
        release();
      });
      if (reset) k.resetCoverage(d);
      return reply.header('content-type', type).send(stream);
    }
    const size = m.area.bytes.length;
    reply.header('accept-ranges', 'bytes').type('application/octet-stream');
    // If-Range needs a strong validator; ours are weak, so it always means "the whole area".
    const range = req.headers['if-range'] !== undefined ? null : parseRange(req.headers.range, size);
    if (range === 'unsatisfiable') {
      if (reset) k.resetCoverage(d);
      reply.header('content-range', `bytes */${size}`);
      return sendProblem(engine, req, reply, 'EINVAL', `Range ${req.headers.range} is outside the ${size}-byte area`, 416);
    }
    const src = range === null ? m.area.bytes : m.area.bytes.subarray(range.start, range.end + 1);
    const charged = src.length >= SNAPSHOT_CHARGE_MIN ? src.length : 0;
    const refused = charged === 0 ? null : chargeSnapshot(engine, charged);
    if (refused !== null) return sendBusy(engine, req, reply, refused);
    // The whole area: one copy shared by the reads of it until it is written again.
    const whole = range === null ? pool.whole(m.area.stamp, src) : null;
    const snap = whole !== null ? whole.buf : pool.copy(src);
    // 'close' ends every reply (sent, failed, aborted); only one that finished leaves the
    // buffer free for reuse (an aborted socket write may still refer to it).
    reply.raw.once('close', () => {
      engine.budget.release(charged, 'snapshots');
      if (whole !== null) pool.done(whole, reply.raw.writableFinished);
      else if (reply.raw.writableFinished) pool.release(snap);
    });
    if (reset) k.resetCoverage(d);
    if (range === null) return reply.send(snap);
    reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`);
    return reply.send(snap);
  };

  r.put(`${path}/count`, {
    schema: {
      tags: ['coverage'],
      summary: 'write the count word, as userspace does with cover[0] = n',
      params: FdParams,
      body: CountBody,
      response: { 200: CountReply, ...problems(400, 404, 507) },
    },
    validatorCompiler: fastValidator({ params: fdParams, body: countBody }),
  }, (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    const m = k.setCount(k.descriptor(req.params.fd), req.body.count);
    sendJson(reply, `{"count":${m.trace.count},"words":${m.trace.words}}`);
  });
}
