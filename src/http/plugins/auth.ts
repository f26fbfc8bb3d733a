/**
 * KCOV_TOKEN: bearer authentication on every route but /healthz and /readyz.
 * The token is compared as SHA-256 digests with crypto.timingSafeEqual, so
 * neither the comparison time nor a length mismatch tells how much of a guess
 * was right. A missing or wrong token is 401 problem+json, errno EACCES (the
 * caller lacks the credential; the contract maps EACCES to 403, and 401 is an
 * HTTP-level exception like 413), with WWW-Authenticate: Bearer (RFC 6750).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Engine } from '../../engine/engine.js';
import { sendProblem } from './errors.js';

/** Routes a load balancer or orchestrator probes without credentials. */
export const OPEN_ROUTES = new Set(['/healthz', '/readyz']);

const BEARER_RE = /^Bearer +([\x21-\x7e]+) *$/i;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function registerAuth(app: FastifyInstance, engine: Engine, token: string | undefined): void {
  if (token === undefined) return;
  const want = digest(token);
  app.addHook('onRequest', async (req, reply) => {
    if (OPEN_ROUTES.has(req.routeOptions.url ?? '') || (req.routeOptions.config as { public?: boolean }).public === true) return;
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? BEARER_RE.exec(header) : null;
    if (m !== null && timingSafeEqual(digest(m[1]!), want)) return;
    reply.header('www-authenticate', m === null ? 'Bearer realm="kcovd"' : 'Bearer realm="kcovd", error="invalid_token"');
    sendProblem(engine, req, reply, 'EACCES', m === null
      ? 'this server needs Authorization: Bearer <KCOV_TOKEN>'
      : 'the bearer token is not this server\'s KCOV_TOKEN', 401);
    return reply;
  });
}
