/**
 * Bounded waits for kernel operations that would sleep. The engine never
 * blocks: an operation that would (OpenBSD kr_barrier, waiting for remote
 * sections opened with POST /threads/{tid}/remote to close) throws WouldBlock
 * before changing anything. The route retries it until the sections have
 * closed or the bound runs out, then answers ETIMEDOUT (409) with nothing
 * changed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { KcovError, WouldBlock } from '../engine/errno.js';

/** How often a waiting request looks again. */
const POLL_MS = 5;

export async function waitOut<T>(boundMs: number, op: () => T): Promise<T> {
  const start = Date.now();
  for (;;) {
    try {
      return op();
    } catch (e) {
      if (!(e instanceof WouldBlock)) throw e;
      const waited = Date.now() - start;
      if (waited >= boundMs) {
        throw new KcovError('ETIMEDOUT', `${e.message}; still open after ${waited} ms (bound ${boundMs} ms), nothing changed`);
      }
      await sleep(Math.min(POLL_MS, boundMs - waited));
    }
  }
}
