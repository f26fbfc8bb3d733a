/**
 * application/json bodies. Events bodies (routes ending in /events) are scanned
 * from their bytes into records first (codecs/events-json.ts): a valid batch
 * never becomes objects, and a surely invalid one is refused after a byte scan
 * with zod's words for its first bad element. Everything else, and every body
 * the scanner does not decide, is parsed by Fastify's own JSON parser
 * (prototype poisoning refused) and validated by zod as before.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Segment } from '../../engine/events.js';
import { JsonEvents } from '../../../schemas/events.js';
import { scanEvents } from '../codecs/events-json.js';
import { boundedParse, fastifyErrors } from '../validate.js';

const SEGMENTS = Symbol('kcovd.segments');

/** An events body already decoded into records, in the order of the body's keys. */
export interface SegmentsBody {
  readonly [SEGMENTS]: true;
  readonly segments: Segment[];
}

export function isSegmentsBody(body: unknown): body is SegmentsBody {
  return typeof body === 'object' && body !== null && (body as Partial<SegmentsBody>)[SEGMENTS] === true;
}

export function registerJsonBody(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  const slow = (req: FastifyRequest, buf: Buffer, done: (err: Error | null, body?: unknown) => void) => parse(req, buf.toString('utf8'), done);
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    const buf = body as Buffer;
    if (req.routeOptions.url?.endsWith('/events') !== true || buf.length === 0) return slow(req, buf, done);
    const scan = scanEvents(buf);
    if (scan === null) return slow(req, buf, done);
    if (scan.kind === 'segments') return done(null, { [SEGMENTS]: true, segments: scan.segments } satisfies SegmentsBody);
    let element: unknown;
    try {
      element = JSON.parse(scan.text);
    } catch {
      return slow(req, buf, done);
    }
    const r = boundedParse(JsonEvents as never, { [scan.key]: [element] });
    // Never expected: the scanner calls invalid only what zod refuses.
    if (r.issues === null) return slow(req, buf, done);
    for (const issue of r.issues) if (issue.path.length >= 2) issue.path[1] = scan.index;
    done(Object.assign(new Error('invalid events body'), { validation: fastifyErrors(r.issues), validationContext: 'body', statusCode: 400 }), undefined);
  });
}
