/** A problem+json reply from kcovd, surfaced as a typed error. */
import type { z } from 'zod';
import type { ErrnoName, Problem } from '../../schemas/index.js';

export type ProblemBody = z.output<typeof Problem>;
export type Errno = z.output<typeof ErrnoName>;

/**
 * Thrown for every non-2xx reply. `errno`, `code` and `detail` come from the
 * RFC 9457 body kcovd sends; a reply that is not problem+json (a proxy's 502,
 * say) keeps its status and text, with errno and code null.
 */
export class KcovdError extends Error {
  override readonly name = 'KcovdError';
  /** HTTP status. */
  readonly status: number;
  /** Errno name the dialect's kernel returns, e.g. "EBUSY"; null when the body was not a problem. */
  readonly errno: Errno | null;
  /** The errno's number in the kernel's dialect; null when the body was not a problem. */
  readonly code: number | null;
  /** What went wrong, naming the kernel rule. */
  readonly detail: string;
  readonly type: string | null;
  readonly title: string | null;
  /** Method and path of the request that failed. */
  readonly request: string;

  constructor(status: number, problem: Partial<ProblemBody> | null, request: string, text = '') {
    const detail = problem?.detail ?? (text.trim().slice(0, 500) || `HTTP ${status}`);
    const errno = (problem?.errno ?? null) as Errno | null;
    super(`${request}: ${errno === null ? `HTTP ${status}` : `${errno} (${status})`}: ${detail}`);
    this.status = status;
    this.errno = errno;
    this.code = typeof problem?.code === 'number' ? problem.code : null;
    this.detail = detail;
    this.type = problem?.type ?? null;
    this.title = problem?.title ?? null;
    this.request = request;
  }

  /** The problem body as kcovd sent it, when there was one. */
  toJSON(): Record<string, unknown> {
    return { status: this.status, errno: this.errno, code: this.code, detail: this.detail, type: this.type, title: this.title, request: this.request };
  }
}

export function isKcovdError(err: unknown, errno?: Errno): err is KcovdError {
  return err instanceof KcovdError && (errno === undefined || err.errno === errno);
}

/**
 * 412 ESTALE: the service restarted since this client's first reply (its
 * `kcovd-boot` changed), so fds and threads the client knew are gone and may
 * now be someone else's. Nothing was done. `forgetBoot()` on the client
 * accepts the new start.
 */
export class KcovdRestartedError extends KcovdError {
  /** The start this client worked with. */
  readonly previousBoot: string;
  /** The start that answered, when the reply said. */
  readonly currentBoot: string | null;

  constructor(problem: Partial<ProblemBody> | null, request: string, previousBoot: string, currentBoot: string | null) {
    super(412, problem, request);
    this.message = `${request}: the kcovd service restarted (boot ${previousBoot}${currentBoot === null ? '' : `, now ${currentBoot}`}); ` +
      'descriptors, threads and kernels from before are gone: ESTALE (412)';
    this.previousBoot = previousBoot;
    this.currentBoot = currentBoot;
  }
}
