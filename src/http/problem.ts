/** RFC 9457 problem details carrying the kernel's errno. */
import { errnoCode, strerror, type DialectName, type ErrnoName } from '../engine/errno.js';

/** The fixed errno -> HTTP status table of the wire contract. */
const STATUS: Record<ErrnoName, number> = {
  EINVAL: 400, ENOTTY: 400, EFAULT: 400,
  EPERM: 403, EACCES: 403,
  ENOENT: 404, EBADF: 404, ESRCH: 404,
  EBUSY: 409, EEXIST: 409, ENXIO: 409, ENOBUFS: 409,
  EOPNOTSUPP: 501, ENOTSUPP: 501,
  ENOMEM: 507,
  // Not in the contract's table: a bounded wait that ran out (OpenBSD kr_barrier).
  ETIMEDOUT: 409,
  // Additions: a request that names another boot of the service (if-kcovd-boot).
  ESTALE: 412,
  // Additions: HTTP-level limits (body too large; URL, parameter or headers too long: 414, or 431 for headers).
  E2BIG: 413, ENAMETOOLONG: 414,
};

export function statusOf(errno: ErrnoName): number {
  return STATUS[errno];
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  errno: ErrnoName;
  code: number;
  instance?: string;
  /** x-request-id of the request that failed (the id the server gave it, if the client sent none). */
  request_id?: string;
}

/**
 * A problem for `errno`. `status` overrides the table only for HTTP-level
 * failures the kernel never sees (413 body too large, 415 media type, 416 range).
 */
export function problem(errno: ErrnoName, detail: string, dialect: DialectName, status?: number, instance?: string, requestId?: string): ProblemBody {
  const p: ProblemBody = {
    type: `urn:kcovd:errno:${errno}`,
    title: strerror(errno),
    status: status ?? statusOf(errno),
    detail,
    errno,
    code: errnoCode(errno, dialect),
  };
  if (instance !== undefined) p.instance = instance;
  if (requestId !== undefined) p.request_id = requestId;
  return p;
}
