/**
 * Consistency checks over the whole model, for tests and fuzzing: what must
 * hold between any two requests, whatever the requests were. Each broken rule
 * is one line; an empty list means the model is consistent.
 *
 *  - memory: per category, the budget's engine-side use equals the sum of the
 *    kernels' accounts; each kernel's area bytes equal the bytes of its live
 *    (allocated, not freed) buffers; all within KCOV_MEMORY_LIMIT; no buffer
 *    was freed twice; the area pool holds what it is charged for, within
 *    KCOV_AREA_POOL, and none of its buffers is live;
 *  - no orphans: every live buffer is reachable from its kernel (a descriptor,
 *    a thread, a CPU, or the dialect's state: remotes, section pools), and
 *    every area reachable is live (nothing points at freed memory);
 *  - tables: fds and tids are the keys they are filed under, an open fd is not
 *    marked closed, an owner is a live thread of the same kernel, a thread's
 *    open descriptor is the one in the fd table;
 *  - counts: every count word is at most the area's capacity unless userspace
 *    wrote it past capacity (PUT count); writers never push it there;
 *  - sections: a CPU section never outlives the request that ran it;
 *  - cover: the union tables are consistent and charged, and no area count
 *    went below its folded mark outside the kernel's gate (cover/union.ts).
 */
import { Area } from './area.js';
import type { Engine } from './engine.js';
import type { Kernel } from './kernel.js';
import { KERNEL_CATEGORIES } from './memory.js';
import type { Descriptor } from './model.js';

export function checkInvariants(engine: Engine): string[] {
  const out: string[] = [];
  const budget = engine.budget;
  const by = budget.breakdown();
  for (const [name, k] of engine.kernels) {
    if (k.name !== name) out.push(`kernel filed as "${name}" is named "${k.name}"`);
    checkKernel(k, out);
  }
  for (const c of KERNEL_CATEGORIES) {
    let sum = 0;
    for (const k of engine.kernels.values()) sum += k.account.bytes(c);
    if (by[c] !== sum) out.push(`budget ${c} ${by[c]} != sum of kernel ${c} ${sum}`);
  }
  let total = 0;
  for (const v of Object.values(by)) total += v;
  if (budget.used !== total) out.push(`budget.used ${budget.used} != sum of its categories ${total}`);
  if (budget.used < 0 || budget.used > budget.limit) out.push(`budget.used ${budget.used} outside 0..${budget.limit}`);
  let idle = 0;
  for (const b of budget.idleBuffers()) {
    idle += b.byteLength;
    for (const k of engine.kernels.values()) if (k.account.isLive(b)) out.push(`kernel "${k.name}": a live area's buffer is also idle in the pool`);
  }
  if (by.pool !== idle) out.push(`budget pool ${by.pool} != bytes of idle buffers ${idle}`);
  if (by.pool > budget.poolLimit) out.push(`budget pool ${by.pool} over KCOV_AREA_POOL ${budget.poolLimit}`);
  return out;
}

function checkKernel(k: Kernel, out: string[]): void {
  const at = `kernel "${k.name}"`;
  const mem = k.account;
  let live = 0;
  for (const b of mem.liveBuffers()) live += b.byteLength;
  if (mem.areaBytes !== live) out.push(`${at}: memory ${mem.areaBytes} != bytes of live buffers ${live}`);
  if (mem.badFrees !== 0) out.push(`${at}: ${mem.badFrees} frees of buffers that were not live`);
  if (mem.bytes('cover') !== k.cover.bytes) out.push(`${at}: cover charged ${mem.bytes('cover')} != bytes of its tables ${k.cover.bytes}`);
  k.cover.check(at, out);

  // Reachability: every Area anywhere in the kernel's object graph.
  const reachable = reachableBuffers(k);
  for (const b of reachable) {
    if (!mem.isLive(b)) out.push(`${at}: an area of ${b.byteLength} bytes is reachable but was freed (or never charged)`);
  }
  for (const b of mem.liveBuffers()) {
    if (!reachable.has(b)) out.push(`${at}: orphan area of ${b.byteLength} bytes (charged, reachable from nothing)`);
  }

  const counted = (what: string, a: Area | null | undefined) => {
    if (a === null || a === undefined) return;
    const cap = a.capacity(1);
    if (a.count > cap && !mem.wasCountWritten(a)) out.push(`${at}: ${what} count ${a.count} > capacity ${cap}`);
  };

  for (const [fd, d] of k.descriptors) {
    if (d.fd !== fd) out.push(`${at}: descriptor filed as fd ${fd} has fd ${d.fd}`);
    if (d.closed) out.push(`${at}: fd ${fd} is in the table but marked closed`);
    checkOwner(k, d, out);
    counted(`fd ${fd}`, d.trace());
  }
  for (const [tid, t] of k.threads) {
    if (t.tid !== tid) out.push(`${at}: thread filed as ${tid} has tid ${t.tid}`);
    const d = t.kcov;
    if (d !== null) {
      if (!d.closed && k.descriptors.get(d.fd) !== d) out.push(`${at}: thread ${tid} holds fd ${d.fd}, which is not in the fd table`);
      if (d.closed) {
        checkOwner(k, d, out);
        counted(`closed fd ${d.fd}`, d.trace());
      }
    }
    counted(`thread ${tid} trace`, t.trace?.area);
    counted(`thread ${tid} section`, t.section?.target?.area);
  }
  for (const c of k.cpus) {
    if (c.section !== null) out.push(`${at}: cpu ${c.id} still runs a section on ${c.section.remote} between requests`);
    counted(`cpu ${c.id}`, c.area);
  }
}

function checkOwner(k: Kernel, d: Descriptor, out: string[]): void {
  const o = d.owner;
  if (o !== null && k.threads.get(o.tid) !== o) {
    out.push(`kernel "${k.name}": fd ${d.fd} is owned by thread ${o.tid}, which is not a live thread of the kernel`);
  }
}

/**
 * Buffers of every Area reachable from the kernel's tables and its dialect's
 * state. The walk is generic (any field of any object), so a new field that
 * holds an area is seen without a change here.
 */
function reachableBuffers(k: Kernel): Set<ArrayBuffer> {
  const found = new Set<ArrayBuffer>();
  const seen = new Set<object>();
  const stack: unknown[] = [[...k.descriptors.values()], [...k.threads.values()], k.cpus, k.state, [...k.state.areas()]];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null || seen.has(v)) continue;
    seen.add(v);
    if (v instanceof Area) {
      found.add(v.buffer);
      continue;
    }
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) continue;
    if (v instanceof Map) {
      for (const [a, b] of v) stack.push(a, b);
    } else if (v instanceof Set || Array.isArray(v)) {
      for (const a of v) stack.push(a);
    } else {
      for (const key of Object.keys(v)) stack.push((v as Record<string, unknown>)[key]);
    }
  }
  // Freed areas the cover union keeps until their records are folded.
  for (const b of k.cover.retiredBuffers()) found.add(b);
  return found;
}
