/**
 * A dialect's remote registry (Linux kcov_remote_map, OpenBSD kr_list, NetBSD
 * kcov_remote list): a map by canonical key that charges each entry to the
 * kernel's account and holds at most KCOV_MAX_REMOTES, whichever path of
 * whichever dialect adds to it.
 */
import { fail } from '../errno.js';
import { COST } from './costs.js';
import type { KernelMemory } from './memory.js';

/** What a dialect's state is given to build its registry with. */
export interface StateContext {
  registry<R extends object>(): RemoteRegistry<R>;
}

export class RemoteRegistry<R extends object> implements ReadonlyMap<string, R> {
  private readonly map = new Map<string, R>();
  private readonly account: KernelMemory;
  private readonly max: number | undefined;
  private readonly kernelName: string;

  constructor(account: KernelMemory, max: number | undefined, kernelName: string) {
    this.account = account;
    this.max = max;
    this.kernelName = kernelName;
  }

  /** File `r` under `key` (new keys only): ENOMEM past KCOV_MAX_REMOTES or the budget. */
  add(key: string, r: R): void {
    if (this.map.has(key)) throw new Error(`remote ${key} is already filed`);
    if (this.max !== undefined && this.map.size >= this.max) {
      fail('ENOMEM', `kernel "${this.kernelName}" already has ${this.max} remotes (KCOV_MAX_REMOTES)`);
    }
    this.account.charge(COST.remote, `remote ${key}`, 'remotes');
    this.map.set(key, r);
  }

  delete(key: string): boolean {
    if (!this.map.delete(key)) return false;
    this.account.release(COST.remote, 'remotes');
    return true;
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): R | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  keys(): MapIterator<string> {
    return this.map.keys();
  }

  values(): MapIterator<R> {
    return this.map.values();
  }

  entries(): MapIterator<[string, R]> {
    return this.map.entries();
  }

  [Symbol.iterator](): MapIterator<[string, R]> {
    return this.map[Symbol.iterator]();
  }

  forEach(fn: (value: R, key: string, map: ReadonlyMap<string, R>) => void): void {
    for (const [k, v] of this.map) fn(v, k, this);
  }
}
