/**
 * Bounded waits for kernel operations that would sleep. The engine never
 * blocks: an operation that would (OpenBSD kr_barrier, waiting for remote
 * sections opened with POST /threads/{tid}/remote to close) throws WouldBlock
 * before changing anything. The route retries it after each change the kernel
 * reports for that remote (a section leaving, a thread exiting) until it goes through or the
 * bound runs out, then answers ETIMEDOUT (409) with nothing changed.
 */
import { KcovError, WouldBlock } from '../engine/errno.js';
import type { Kernel } from '../engine/kernel.js';
import { remoteKey } from '../engine/kernel/notify.js';

/** Resolves at the next change of the remote waited for (any change without one) or after `ms`. */
function nextChange(kernel: Kernel, remote: string | undefined, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const unwatch = kernel.changes.watchOn(remote === undefined ? [] : [remoteKey(remote)], () => done());
    const done = () => {
      clearTimeout(timer);
      unwatch();
      resolve();
    };
    const timer = setTimeout(done, ms);
  });
}

/** op() now, or a promise of it once it stops blocking (ETIMEDOUT past the bound). */
export function waitOut<T>(kernel: Kernel, boundMs: number, op: () => T): T | Promise<T> {
  // Nearly every call goes through at once: no promise for those.
  const start = Date.now();
  try {
    return op();
  } catch (e) {
    if (!(e instanceof WouldBlock)) throw e;
    return waitLonger(kernel, boundMs, op, start, e);
  }
}

async function waitLonger<T>(kernel: Kernel, boundMs: number, op: () => T, start: number, blocked: WouldBlock): Promise<T> {
  for (;;) {
    const waited = Date.now() - start;
    if (waited >= boundMs) {
      throw new KcovError('ETIMEDOUT', `${blocked.message}; still open after ${waited} ms (bound ${boundMs} ms), nothing changed`);
    }
    await nextChange(kernel, blocked.remote, boundMs - waited);
    try {
      return op();
    } catch (e) {
      if (!(e instanceof WouldBlock)) throw e;
      blocked = e;
    }
  }
}
