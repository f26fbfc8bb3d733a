/**
 * Long-poll of a descriptor's coverage (?wait=MS&since=N): the engine only
 * says "something changed" (Kernel.watch); this waits for that with a bounded
 * timer, re-checks the count, and gives up at the deadline or when the app
 * closes (shutdown answers every poll at once with the area as it is).
 */
import type { Engine } from '../engine/engine.js';
import type { Kernel } from '../engine/kernel.js';

export class LongPoll {
  /** [I] longest wait a request gets (KCOV_MAX_WAIT), whatever it asks. */
  readonly maxWait: number;
  private readonly pending = new Set<() => void>();
  private closing = false;

  constructor(maxWait: number) {
    this.maxWait = maxWait;
  }

  /** Resolves on the kernel's next change, after `ms`, on `gone` (client left) or at close. */
  private once(kernel: Kernel, ms: number, gone: { once(ev: 'close', fn: () => void): unknown; off(ev: 'close', fn: () => void): unknown }): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        unwatch();
        gone.off('close', done);
        this.pending.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      const unwatch = kernel.watch(done);
      gone.once('close', done);
      this.pending.add(done);
    });
  }

  /**
   * Wait until the count of fd differs from `since` (the current count when
   * absent) or `wait` ms (capped) pass. Engine errors (kernel deleted, fd
   * closed) surface as they would without waiting.
   */
  async waitForChange(
    engine: Engine,
    kernelName: string,
    fd: number,
    wait: number | undefined,
    since: number | undefined,
    gone: { once(ev: 'close', fn: () => void): unknown; off(ev: 'close', fn: () => void): unknown },
  ): Promise<void> {
    if (wait === undefined || wait <= 0) return;
    const deadline = Date.now() + Math.min(wait, this.maxWait);
    let gaveUp = false;
    const leave = () => {
      gaveUp = true;
    };
    gone.once('close', leave);
    try {
      for (;;) {
        const k = engine.kernel(kernelName);
        const count = k.mapping(k.descriptor(fd)).trace.count;
        since ??= count;
        const left = deadline - Date.now();
        if (count !== since || left <= 0 || this.closing || gaveUp) return;
        await this.once(k, left, gone);
      }
    } finally {
      gone.off('close', leave);
    }
  }

  /** Shutdown: every waiting poll answers now. */
  close(): void {
    this.closing = true;
    for (const done of [...this.pending]) done();
  }
}
