/**
 * One kernel's memory account: every byte the kernel holds for a client is
 * charged here (and through it to the shared MemoryBudget), by category. Areas
 * are allocated here too, so the account knows each live buffer and the
 * invariant checker can match what is charged against what is reachable.
 */
import { Area, WORD } from '../area.js';
import { fail } from '../errno.js';
import type { KernelCategory, MemoryBudget } from '../memory.js';
import { KERNEL_CATEGORIES } from '../memory.js';

export type AreaCategory = Extract<KernelCategory, 'areas' | 'sections'>;

export class KernelMemory {
  private readonly budget: MemoryBudget;
  private readonly by = Object.fromEntries(KERNEL_CATEGORIES.map((c) => [c, 0])) as Record<KernelCategory, number>;
  /** [K] buffers allocated and not yet freed, with the category they are charged to. */
  private readonly live = new Map<ArrayBuffer, AreaCategory>();
  /** [K] buffers whose count word was written past capacity by userspace (PUT count). */
  private readonly countWritten = new WeakSet<ArrayBuffer>();
  /** [K] frees of a buffer that was not live (a double free); checkInvariants reports them. */
  private doubleFrees = 0;

  constructor(budget: MemoryBudget) {
    this.budget = budget;
  }

  /** Charge `bytes` of `category` (ENOMEM past the budget, nothing charged). */
  charge(bytes: number, what: string, category: KernelCategory): void {
    if (bytes === 0) return;
    this.budget.charge(bytes, what, category);
    this.by[category] += bytes;
  }

  release(bytes: number, category: KernelCategory): void {
    if (bytes === 0) return;
    this.budget.release(bytes, category);
    this.by[category] -= bytes;
  }

  /** Allocate a zeroed area of `words` words (a pooled buffer when one fits), charged to the budget (ENOMEM past it). */
  allocArea(words: number, what: string, category: AreaCategory = 'areas'): Area {
    const bytes = words * WORD;
    // Taken from the pool before charging, so making room cannot give away this very buffer.
    const reused = this.budget.reuse(bytes);
    try {
      this.charge(bytes, what, category);
    } catch (e) {
      if (reused !== null) this.budget.recycle(reused);
      throw e;
    }
    let area: Area;
    try {
      area = reused !== null ? new Area(reused) : Area.allocate(words);
    } catch {
      this.release(bytes, category);
      fail('ENOMEM', `${what}: could not allocate ${bytes} bytes`);
    }
    this.live.set(area.buffer, category);
    return area;
  }

  freeArea(area: Area | null): void {
    if (area === null) return;
    const category = this.live.get(area.buffer);
    if (category === undefined) {
      this.doubleFrees++;
      return;
    }
    this.live.delete(area.buffer);
    this.release(area.buffer.byteLength, category);
    // Freed means unreachable: no descriptor, thread, remote or snapshot refers to it (replies copy).
    this.budget.recycle(area.buffer);
  }

  /** Userspace wrote the count word of `area` (it may then exceed capacity). */
  markCountWritten(area: Area): void {
    this.countWritten.add(area.buffer);
  }

  wasCountWritten(area: Area): boolean {
    return this.countWritten.has(area.buffer);
  }

  isLive(buffer: ArrayBuffer): boolean {
    return this.live.has(buffer);
  }

  /** Live buffers (for the invariant checker and metrics). */
  liveBuffers(): IterableIterator<ArrayBuffer> {
    return this.live.keys();
  }

  get liveCount(): number {
    return this.live.size;
  }

  get badFrees(): number {
    return this.doubleFrees;
  }

  /** Bytes of live areas (descriptor, remote, section and per-CPU areas). */
  get areaBytes(): number {
    return this.by.areas + this.by.sections;
  }

  /** Bytes charged in `category`. */
  bytes(category: KernelCategory): number {
    return this.by[category];
  }

  /** Everything this kernel charged. */
  get total(): number {
    let n = 0;
    for (const c of KERNEL_CATEGORIES) n += this.by[c];
    return n;
  }

  /** Give back everything still charged (the kernel is deleted). */
  releaseAll(): void {
    for (const c of KERNEL_CATEGORIES) this.release(this.by[c], c);
    // The kernel is gone: nothing refers to its areas any more.
    for (const b of this.live.keys()) this.budget.recycle(b);
    this.live.clear();
  }
}
