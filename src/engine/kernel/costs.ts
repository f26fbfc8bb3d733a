/**
 * What one engine object really costs, in bytes of heap, charged to
 * KCOV_MEMORY_LIMIT for each one a client makes. Measured with
 * `node --expose-gc dist/scripts/measure-engine-memory.js` (heapUsed +
 * arrayBuffers after a full GC, divided by the objects made; Node 20):
 *
 *   thread      132 (Linux) / 115 (NetBSD)        -> 160, plus one closed descriptor it may hold
 *   descriptor  205 (Linux) / 157 (NetBSD) / 141 (OpenBSD)
 *   remote      ~188 a Linux handle (entry + the hex kept on its descriptor) / 165 OpenBSD
 *   waiter      2242 a long-poll (timer, promise, async frame, closures, subscription)
 *   guard       25 a distinct PC (kernel/guards.ts charges its table itself)
 *
 * Areas are charged at their exact byte length, elsewhere.
 */
export const COST = {
  /** A thread in the tid table, with room for the one closed descriptor it may still hold. */
  thread: 384,
  /** An open descriptor in the fd table (its area is charged on its own). */
  descriptor: 224,
  /** A registered remote (registry entry; Linux also the handle string kept on its descriptor). */
  remote: 192,
  /** A long-poll or barrier waiter. */
  waiter: 2304,
} as const;
