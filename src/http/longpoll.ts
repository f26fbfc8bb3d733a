/**
 * Long-poll of a descriptor's coverage (?wait=MS&since=N): the engine says
 * when that descriptor or the buffer it maps changed (ChangeNotifier.watchOn,
 * so an unrelated write wakes no poll); this waits for that with a bounded
 * timer, re-checks the count, and gives up at the deadline or when the app
 * closes (shutdown answers every poll at once with the area as it is). Each
 * waiting poll is charged to the memory budget (the kernel's 'waiters').
 */
import type { Engine } from '../engine/engine.js';
import type { Kernel } from '../engine/kernel.js';
import { fdKey, type WatchKey } from '../engine/kernel/notify.js';

export class LongPoll {
  /** [I] longest wait a request gets (KCOV_MAX_WAIT), whatever it asks. */
  readonly maxWait: number;
  private readonly pending = new Set<() => void>();
  private closing = false;

  constructor(maxWait: number) {
    this.maxWait = maxWait;
  }

  /** Resolves on the next change of `keys`, after `ms`, on `gone` (client left) or at close. */
  private once(kernel: Kernel, keys: readonly WatchKey[], ms: number, gone: { once(ev: 'close', fn: () => void): unknown; off(ev: 'close', fn: () => void): unknown }): Promise<void> {
    // Subscribing first: past the budget it throws (ENOMEM) before anything is set up.
    const unwatch = kernel.changes.watchOn(keys, () => done());
    let done = () => {};
    return new Promise((resolve) => {
      done = () => {
        clearTimeout(timer);
        unwatch();
        gone.off('close', done);
        this.pending.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
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
        const trace = k.mapping(k.descriptor(fd)).trace;
        const count = trace.count;
        since ??= count;
        const left = deadline - Date.now();
        if (count !== since || left <= 0 || this.closing || gaveUp) return;
        await this.once(k, [fdKey(fd), trace.buffer], left, gone);
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
