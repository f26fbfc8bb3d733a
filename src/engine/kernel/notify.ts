/**
 * Change notification: who waits for what. A long-poll waits for one
 * descriptor (its fd and the buffer it maps), an OpenBSD kr_barrier for one
 * remote's sections. The kernel and its dialect say what changed, and only the
 * waiters of that resource run (plus those that watch the whole kernel), so
 * thousands of idle waiters cost an unrelated write one map lookup.
 *
 * Each subscription is charged to the kernel's account (COST.waiter) while it
 * lasts: waiters are bounded by KCOV_MEMORY_LIMIT like everything else.
 */
import { COST } from './costs.js';
import type { KernelMemory } from './memory.js';

/** What a waiter waits on: the bytes of a buffer, a descriptor ("fd:N") or a remote ("remote:KEY"). */
export type WatchKey = ArrayBuffer | string;

export function fdKey(fd: number): string {
  return `fd:${fd}`;
}

export function remoteKey(key: string): string {
  return `remote:${key}`;
}

export class ChangeNotifier {
  private readonly account: KernelMemory;
  /** Waiters of the whole kernel. */
  private readonly any = new Set<() => void>();
  private readonly by = new Map<WatchKey, Set<() => void>>();
  private waiters = 0;

  constructor(account: KernelMemory) {
    this.account = account;
  }

  /** Call `fn` after every change in the kernel; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    return this.watchOn([], fn);
  }

  /**
   * Call `fn` after a change of any of `keys` (all changes when empty);
   * returns the unsubscribe. ENOMEM when the budget has no room for the waiter.
   */
  watchOn(keys: readonly WatchKey[], fn: () => void): () => void {
    this.account.charge(COST.waiter, 'a waiter (long-poll or barrier)', 'waiters');
    this.waiters++;
    if (keys.length === 0) this.any.add(fn);
    for (const k of keys) {
      let s = this.by.get(k);
      if (s === undefined) this.by.set(k, (s = new Set()));
      s.add(fn);
    }
    let live = true;
    return () => {
      if (!live) return;
      live = false;
      this.waiters--;
      this.account.release(COST.waiter, 'waiters');
      if (keys.length === 0) this.any.delete(fn);
      for (const k of keys) {
        const s = this.by.get(k);
        if (s === undefined) continue;
        s.delete(fn);
        if (s.size === 0) this.by.delete(k);
      }
    };
  }

  /** Waiters now. */
  get size(): number {
    return this.waiters;
  }

  /** The bytes of `buffer` (a count or records) changed. */
  touched(buffer: ArrayBuffer): void {
    this.wake(buffer);
  }

  /** Descriptor `fd` changed (closed, an ioctl, what it maps). */
  fdChanged(fd: number): void {
    if (this.waiters === 0) return;
    this.wake(fdKey(fd));
  }

  /** Descriptor `fd` and the buffer it had changed (an ioctl): each of their waiters runs once. */
  descriptorChanged(fd: number, buffer: ArrayBuffer | null): void {
    if (this.waiters === 0) return;
    const fns = new Set(this.by.get(fdKey(fd)));
    if (buffer !== null) for (const fn of this.by.get(buffer) ?? []) fns.add(fn);
    for (const fn of fns) fn();
    this.changed();
  }

  /** The sections of remote `key` changed (one left, the remote went away). */
  remoteChanged(key: string): void {
    if (this.waiters === 0) return;
    this.wake(remoteKey(key));
  }

  /** Something changed that no key names: only the kernel-wide waiters run. */
  changed(): void {
    if (this.any.size === 0) return;
    for (const fn of [...this.any]) fn();
  }

  private wake(key: WatchKey): void {
    if (this.waiters === 0) return;
    const s = this.by.get(key);
    // Each callback only schedules its own re-check; copy first, it unsubscribes.
    if (s !== undefined) for (const fn of [...s]) fn();
    this.changed();
  }

  /** The kernel is gone: wake everyone (each unsubscribes itself). */
  clear(): void {
    const all = new Set(this.any);
    for (const s of this.by.values()) for (const fn of s) all.add(fn);
    for (const fn of all) fn();
  }
}
