/**
 * KCOV_TOKEN: bearer authentication on every route but /healthz and /readyz.
 * The token is compared as SHA-256 digests with crypto.timingSafeEqual, so
 * neither the comparison time nor a length mismatch tells how much of a guess
 * was right. A missing or wrong token is 401 problem+json, errno EACCES (the
 * caller lacks the credential; the contract maps EACCES to 403, and 401 is an
 * HTTP-level exception like 413), with WWW-Authenticate: Bearer (RFC 6750).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Engine } from '../../engine/engine.js';
import { sendProblem } from './errors.js';

/** Routes a load balancer or orchestrator probes without credentials. */
export const OPEN_ROUTES = new Set(['/healthz', '/readyz']);

const BEARER_RE = /^Bearer +([\x21-\x7e]+) *$/i;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * The bearer check app.ts runs inside its one onRequest hook (no hook, no
 * promise of its own): true when the request may go on, false when the 401
 * has been sent. Undefined when there is no token.
 */
export function authCheck(engine: Engine, token: string | undefined): ((req: FastifyRequest, reply: FastifyReply) => boolean) | undefined {
  if (token === undefined) return undefined;
  const want = digest(token);
  return (req, reply) => {
    const header = req.headers.authorization;
    const m = typeof header === 'string' ? BEARER_RE.exec(header) : null;
    if (m !== null && timingSafeEqual(digest(m[1]!), want)) return true;
    // Checked after the token: the common, authorised request never builds routeOptions.
    const route = req.routeOptions;
    if (OPEN_ROUTES.has(route.url ?? '') || (route.config as { public?: boolean }).public === true) return true;
    reply.header('www-authenticate', m === null ? 'Bearer realm="kcovd"' : 'Bearer realm="kcovd", error="invalid_token"');
    sendProblem(engine, req, reply, 'EACCES', m === null
      ? 'this server needs Authorization: Bearer <KCOV_TOKEN>'
      : 'the bearer token is not this server\'s KCOV_TOKEN', 401);
    return false;
  };
}
