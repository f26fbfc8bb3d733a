/**
 * Change notification: who waits for what. A long-poll waits for one
 * descriptor's coverage, an OpenBSD kr_barrier for one remote's sections; the
 * kernel says what changed, and only the waiters of that resource (and those
 * of the whole kernel) run.
 */

/** What a waiter waits on: a descriptor's coverage, a remote, or anything in the kernel. */
export type Resource = { readonly fd: number } | { readonly remote: string } | 'kernel';

export class ChangeNotifier {
  private readonly any = new Set<() => void>();

  /** Call `fn` after each change that may move a count; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    this.any.add(fn);
    return () => {
      this.any.delete(fn);
    };
  }

  /** Waiters now (for the memory account and views). */
  get size(): number {
    return this.any.size;
  }

  /** Tell the listeners (synchronously; each only schedules its own re-check). */
  changed(): void {
    if (this.any.size === 0) return;
    for (const fn of [...this.any]) fn();
  }

  /** The kernel is gone: wake everyone, forget them. */
  clear(): void {
    const all = [...this.any];
    this.any.clear();
    for (const fn of all) fn();
  }
}
