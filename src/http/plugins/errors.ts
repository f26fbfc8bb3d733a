/**
 * Every failure leaves as application/problem+json with an errno: engine
 * errors with the kernel's errno and the contract's status, malformed
 * requests as 400 EINVAL, HTTP-level limits with their own status.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import type { Engine } from '../../engine/engine.js';
import { KcovError, type DialectName, type ErrnoName } from '../../engine/errno.js';
import { problem } from '../problem.js';

export const PROBLEM_JSON = 'application/problem+json';

function dialectOf(engine: Engine, req: FastifyRequest): DialectName {
  const name = (req.params as { kernel?: unknown } | undefined)?.kernel;
  if (typeof name === 'string') {
    const k = engine.kernels.get(name);
    if (k !== undefined) return k.dialect.name;
  }
  return engine.options.dialect;
}

export function sendProblem(
  engine: Engine,
  req: FastifyRequest,
  reply: FastifyReply,
  errno: ErrnoName,
  detail: string,
  status?: number,
): FastifyReply {
  const body = problem(errno, detail, dialectOf(engine, req), status, req.url);
  return reply.code(body.status).type(PROBLEM_JSON).send(JSON.stringify(body));
}

function validationDetail(err: FastifyError): string {
  const issues = (err.validation ?? []) as Array<{ instancePath?: string; message?: string; params?: { issue?: { path?: unknown[] } } }>;
  const where = err.validationContext ?? 'request';
  const parts = issues.slice(0, 5).map((i) => {
    const path = i.instancePath !== undefined && i.instancePath !== '' ? i.instancePath : '';
    return `${where}${path}: ${i.message ?? 'invalid'}`;
  });
  return parts.length > 0 ? parts.join('; ') : err.message;
}

export function registerErrors(app: FastifyInstance, engine: Engine): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof KcovError) return sendProblem(engine, req, reply, err.errno, err.message);
    if (hasZodFastifySchemaValidationErrors(err) || err.validation !== undefined) {
      return sendProblem(engine, req, reply, 'EINVAL', validationDetail(err));
    }
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return sendProblem(engine, req, reply, 'EINVAL', `request body is larger than the limit of ${app.initialConfig.bodyLimit} bytes`, 413);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return sendProblem(engine, req, reply, 'EINVAL', `unsupported Content-Type ${JSON.stringify(req.headers['content-type'] ?? '')}`, 415);
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return sendProblem(engine, req, reply, 'EINVAL', 'Content-Length does not match the body', 400);
    }
    const status = typeof err.statusCode === 'number' ? err.statusCode : 500;
    if (status >= 400 && status < 500) {
      return sendProblem(engine, req, reply, 'EINVAL', err.message, status === 404 ? 400 : status);
    }
    req.log.error({ err }, 'unexpected error');
    return sendProblem(engine, req, reply, 'EFAULT', 'internal error', 500);
  });

  app.setNotFoundHandler((req, reply) => {
    sendProblem(engine, req, reply, 'ENOENT', `no route ${req.method} ${req.url.split('?')[0]}`, 404);
  });
}
