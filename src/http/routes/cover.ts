/**
 * Cumulative coverage: GET/DELETE /v1/kernels/{kernel}/cover, and the
 * `?new=true` reply of the coverage route (newCoverageReply).
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { CoverJson, CoverQuery, KernelParams, NoContent, problems } from '../../../schemas/index.js';
import { Area, WORD, type TraceMode } from '../../engine/area.js';
import type { Engine } from '../../engine/engine.js';
import type { Kernel } from '../../engine/kernel.js';
import type { Descriptor } from '../../engine/model.js';
import type { Mapping } from '../../engine/dialect.js';
import type { Fleet } from '../../fleet/fleet.js';
import { coverageJsonBuffer, coverageTextBuffer, negotiate, putU64 } from '../codecs/coverage.js';
import { BinaryBody } from '../plugins/docs.js';
import { sendProblem } from '../plugins/errors.js';

/** Sorted unique union of two sorted word arrays (little-endian 64-bit). */
function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  if (b.length === 0) return a;
  if (a.length === 0) return b;
  const all = new BigUint64Array((a.length + b.length) / 2);
  const u = new Uint32Array(all.buffer);
  u.set(a, 0);
  u.set(b, a.length);
  all.sort();
  let n = 0;
  for (let i = 0; i < all.length; i++) if (i === 0 || all[i] !== all[n - 1]) all[n++] = all[i]!;
  return u.subarray(0, n * 2);
}

/** Sorted PCs as rawcover text. */
function textOf(words: Uint32Array): Buffer {
  const out = Buffer.allocUnsafe((words.length / 2) * 19);
  let at = 0;
  for (let i = 0; i < words.length; i += 2) {
    at = putU64(out, at, words[i]!, words[i + 1]!);
    out[at++] = 0x0a;
  }
  return out.subarray(0, at);
}

function jsonOf(words: Uint32Array, head: string): Buffer {
  const out = Buffer.allocUnsafe(head.length + (words.length / 2) * 21 + 2);
  let at = out.write(head, 0, 'latin1');
  for (let i = 0; i < words.length; i += 2) {
    if (i > 0) out[at++] = 0x2c;
    out[at++] = 0x22;
    at = putU64(out, at, words[i]!, words[i + 1]!);
    out[at++] = 0x22;
  }
  out[at++] = 0x5d;
  out[at++] = 0x7d;
  return out.subarray(0, at);
}

export async function coverRoutes(app: FastifyInstance, opts: { engine: Engine; fleet: Fleet | null }): Promise<void> {
  const { engine, fleet } = opts;
  const r = app.withTypeProvider<ZodTypeProvider>();
  const path = '/v1/kernels/:kernel/cover';

  r.get(path, {
    schema: {
      tags: ['coverage'],
      summary: 'cumulative coverage: the union of every PC any descriptor of the kernel recorded',
      description:
        'Every PC that reached the mapped area of any descriptor of the kernel (CMP records contribute their PC) since the kernel ' +
        'was created or the union was reset; it survives count resets, re-inits and closes. With KCOV_FLEET_URL the union is the ' +
        "corpus's, shared by every instance (this instance's part is pushed first; when Redis is unreachable the local union is " +
        'served and `source` says so). text/plain: one `0x…` PC a line, sorted (rawcover). application/json: `count`, `signal` ' +
        "(distinct edge signals as syzkaller's executor computes them, over PC-mode traces) and the sorted `pcs`. " +
        'application/octet-stream: the sorted PCs as packed little-endian words (no count word).',
      params: KernelParams,
      querystring: CoverQuery,
      response: {
        200: {
          description: 'the union',
          content: {
            'application/json': { schema: CoverJson },
            'application/octet-stream': { schema: BinaryBody.describe('sorted PCs, little-endian words') },
            'text/plain': { schema: z.string().describe('rawcover lines, sorted') },
          },
        },
        ...problems(400, 404, 501),
      },
    },
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    k.cover.requireEnabled();
    // The fleet first: its round may empty the local union (a reset on another instance).
    const f = fleet === null ? null : await fleet.read(k);
    if (engine.kernels.get(k.name) !== k) return sendProblem(engine, req, reply, 'ENOENT', `kernel "${k.name}" was deleted`, 404);
    k.cover.settle();
    let pcs = k.cover.pcs.sorted();
    let signal = k.cover.signals.size;
    let source: 'local' | 'fleet' = 'local';
    const lost = k.cover.lost;
    if (f !== null) {
      pcs = mergeSorted(f.pcs, pcs);
      signal = Math.max(f.signal, signal);
      source = 'fleet';
    }
    reply.header('kcovd-cover-source', source);
    const format = req.query.format ?? negotiate(req.headers.accept);
    if (format === 'binary') return reply.type('application/octet-stream').send(Buffer.from(pcs.buffer, pcs.byteOffset, pcs.byteLength));
    if (format === 'text') return reply.header('content-type', 'text/plain; charset=utf-8').send(textOf(pcs));
    const head = `{"count":${pcs.length / 2},"signal":${signal},"corpus":${JSON.stringify(k.cover.corpus)},"source":"${source}","lost":${lost},"pcs":[`;
    return reply.header('content-type', 'application/json; charset=utf-8').send(jsonOf(pcs, head));
  });

  r.delete(path, {
    schema: {
      tags: ['coverage'],
      summary: "reset the kernel's cover union (with KCOV_FLEET_URL, the corpus's union on every instance of the fleet)",
      description:
        'Empties the union; records the areas hold now do not count towards the new one, and every PC is new again to whoever ' +
        "records it first. With KCOV_FLEET_URL this is a fleet-wide reset of the kernel's `corpus`: the union in Redis is emptied " +
        "and the corpus's generation raised; every other kernel of that corpus, on this instance or another, empties its own union " +
        'at its next epoch check (within KCOV_FLEET_FLUSH_MS when it has PCs to push, a second when idle, and before any GET /cover), ' +
        'and what its areas held until then does not ' +
        "count either. An instance cut off from Redis at the time empties its union when it reconnects. 503 EBUSY when Redis is " +
        'unreachable: the local union is reset, the fleet\'s is not (retry once Redis is back).',
      params: KernelParams,
      response: { 204: NoContent, ...problems(404, 501, 503) },
    },
  }, async (req, reply) => {
    const k = engine.kernel(req.params.kernel);
    k.cover.requireEnabled();
    k.cover.reset();
    if (fleet !== null && !(await fleet.reset(k))) {
      return sendProblem(engine, req, reply, 'EBUSY', `the fleet is unreachable; the local union of kernel "${k.name}" was reset, the corpus "${k.cover.corpus}" in Redis was not`, 503);
    }
    return reply.code(204).send();
  });
}

/**
 * `…/coverage?new=true[&reset=true]`: only the records whose PC is new to the
 * union, added to it, the count reset in the same synchronous step. Binary:
 * word 0 the number of new records, then those records; JSON adds `new` and
 * `seen`; text shows only the new records.
 */
export async function newCoverageReply(
  fleet: Fleet | null, reply: FastifyReply, k: Kernel, d: Descriptor, m: Mapping,
  format: 'binary' | 'json' | 'text', mode: TraceMode, reset: boolean,
): Promise<FastifyReply> {
  const got = k.cover.takeNew(m.trace, mode);
  if (reset) k.resetCoverage(d);
  const stride = got.stride;
  let records = got.records;
  if (fleet !== null && records.length > 0) {
    const mask = await fleet.claim(k, records, stride);
    if (mask !== null) {
      const keep = new Uint32Array(records.length);
      let n = 0;
      for (let i = 0; i < mask.length; i++) {
        if (mask[i] === 0) continue;
        keep.set(records.subarray(i * stride * 2, (i + 1) * stride * 2), n * stride * 2);
        n++;
      }
      k.cover.reported -= mask.length - n;
      records = keep.subarray(0, n * stride * 2);
    }
  }
  const n = records.length / (stride * 2);
  const area = new Area(new ArrayBuffer((1 + n * stride) * WORD));
  area.u32.set(records, 2);
  area.count = n;
  if (format === 'binary') return reply.type('application/octet-stream').send(Buffer.from(area.buffer));
  if (format === 'text') return reply.header('content-type', 'text/plain; charset=utf-8').send(coverageTextBuffer(area, mode));
  const json = coverageJsonBuffer(area, mode);
  const tempHead = `{"mode":"${mode}","count":${n},"words":${area.words},`;
  const head = Buffer.from(`{"mode":"${mode}","count":${got.count},"words":${got.words},"new":${n},"seen":${got.visible - n},`, 'latin1');
  return reply.header('content-type', 'application/json; charset=utf-8').send(Buffer.concat([head, json.subarray(tempHead.length)]));
}
