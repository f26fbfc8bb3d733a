/**
 * One emulated kernel: its fd table, threads, remotes, CPUs and the memory its
 * areas hold. The dialect decides what each ioctl, close and exit does; the
 * kernel owns the shared mechanics (tables, allocation, event application).
 */
import { Area, WORD, type TraceMode } from './area.js';
import { CoverUnion } from './cover/union.js';
import type { Command, Dialect, Mapping, RemoteSpec, SectionLeave, SectionSite } from './dialect.js';
import { fail } from './errno.js';
import { applySegments, binarySegment, decodeJsonEvents, type EventResult, type Segment } from './events.js';
import type { MemoryBudget } from './memory.js';
import { Thread, type Descriptor, type TraceTarget } from './model.js';

export interface KernelOptions {
  readonly name: string;
  readonly dialect: Dialect;
  readonly ncpus: number;
  readonly budget: MemoryBudget;
  /** Largest size the size ioctl accepts; the dialect's own limit when absent. */
  readonly maxEntries?: number | undefined;
  /** Words of each per-CPU remote area (Linux CONFIG_KCOV_IRQ_AREA_SIZE). */
  readonly cpuAreaWords?: number | undefined;
  /** Build options in force (the dialect's defaults with the creator's changes). */
  readonly config?: Readonly<Record<string, boolean>> | undefined;
  /** Caps that keep a kernel bounded (KCOV_MAX_*); past each, ENOMEM. Unlimited when absent. */
  readonly limits?: KernelCaps | undefined;
  /** Fleet name of the cover union; the kernel's name when absent. */
  readonly corpus?: string | undefined;
  /** Keep the cover union (KCOV_COVER); on when absent. */
  readonly cover?: boolean | undefined;
}

/** Service caps on a kernel's tables; not kernel rules, so they fail with ENOMEM like an allocation would. */
export interface KernelCaps {
  readonly maxDescriptors?: number | undefined;
  readonly maxThreads?: number | undefined;
  readonly maxRemotes?: number | undefined;
  /** Distinct PCs that get a KCOV_UNIQUE_ENABLE guard; later PCs get none (recorded, never de-duplicated). */
  readonly maxGuards?: number | undefined;
}

export interface IoctlResult {
  ret: number;
  descriptor: Descriptor;
}

/** Per-CPU state for remote sections in softirq/interrupt context. */
export class Cpu {
  /** [I] */
  readonly id: number;
  /** [K] allocated on first use and charged to the budget. */
  area: Area | null = null;
  /** [D] the section running on this CPU. */
  section: import('./model.js').Section | null = null;
  /** [D] dialect data (saved task state, ...). */
  data: Record<string, unknown> = {};

  constructor(id: number) {
    this.id = id;
  }
}

export class Kernel {
  /** [I] */
  readonly name: string;
  readonly dialect: Dialect;
  readonly ncpus: number;
  readonly maxEntries: number | undefined;
  readonly cpuAreaWords: number | undefined;
  readonly cpus: Cpu[];
  /** [K] open fds only; a closed descriptor held by a thread is not here. */
  readonly descriptors = new Map<number, Descriptor>();
  /** [K] */
  readonly threads = new Map<number, Thread>();
  /** [D] remotes keyed by their wire name. */
  readonly remotes = new Map<string, unknown>();
  /** [K] bytes held by this kernel's areas. */
  memory = 0;
  /** [K] records seen on each path, for metrics. */
  readonly stats = { accepted: 0, dropped: 0, ignored: 0 };
  /** [I] */
  readonly caps: KernelCaps;
  /** [I] build options (Linux CONFIG_KCOV_ENABLE_COMPARISONS, CONFIG_KCOV_UNIQUE). */
  readonly config: Readonly<Record<string, boolean>>;
  /** [K] buffers allocated and not yet freed (for checkInvariants and metrics). */
  readonly liveBuffers = new Set<ArrayBuffer>();
  /** [K] buffers whose count word was written past capacity by userspace (PUT count). */
  readonly countWritten = new WeakSet<ArrayBuffer>();
  /** [K] frees of a buffer that was not live (a double free); checkInvariants reports them. */
  badFrees = 0;
  /** [K] change listeners (long-poll); called after anything that may move a count. */
  private readonly listeners = new Set<() => void>();

  /** [K] cumulative coverage; settled before and resynced after every gated operation (see cover/union.ts). */
  readonly cover: CoverUnion;
  private readonly budget: MemoryBudget;
  /** [K] fds are never reused, so a stale fd fails with EBADF instead of reaching a newer file. */
  private nextFd = 3;
  /** [K] persistent guard index of each PC (KCOV_UNIQUE_ENABLE), kernel-wide like guards. */
  private readonly guards = new Map<string, number>();
  private readonly commandsByName = new Map<string, Command>();
  private readonly commandsByNr = new Map<number, Command>();

  constructor(opts: KernelOptions) {
    this.name = opts.name;
    this.dialect = opts.dialect;
    this.ncpus = opts.ncpus;
    this.budget = opts.budget;
    this.maxEntries = opts.maxEntries;
    this.cpuAreaWords = opts.cpuAreaWords;
    this.caps = opts.limits ?? {};
    this.config = opts.config ?? opts.dialect.config ?? {};
    this.cpus = Array.from({ length: opts.ncpus }, (_, i) => new Cpu(i));
    for (const c of opts.dialect.commands) {
      this.commandsByName.set(c.name, c);
      this.commandsByNr.set(c.nr, c);
    }
    this.cover = new CoverUnion(this, opts.budget, opts.corpus ?? opts.name, opts.cover ?? true);
  }

  /**
   * The one gate of every change that is not an append: a count lowered or
   * written, an area re-initialised, re-mapped or freed. Pending records are
   * folded into the cover union first; the marks are resynced after.
   */
  gated<T>(fn: () => T): T {
    this.cover.settle();
    try {
      return fn();
    } finally {
      this.cover.resync();
    }
  }

  // ---- memory -------------------------------------------------------------

  /** Allocate a zeroed area of `words` words, charged to the budget (ENOMEM past it). */
  allocArea(words: number, what: string): Area {
    const bytes = words * WORD;
    this.budget.charge(bytes, what);
    let area: Area;
    try {
      area = Area.allocate(words);
    } catch {
      this.budget.release(bytes);
      fail('ENOMEM', `${what}: could not allocate ${bytes} bytes`);
    }
    this.memory += bytes;
    this.liveBuffers.add(area.buffer);
    return area;
  }

  freeArea(area: Area | null): void {
    if (area === null) return;
    const bytes = area.buffer.byteLength;
    if (!this.liveBuffers.delete(area.buffer)) {
      this.badFrees++;
      return;
    }
    this.budget.release(bytes);
    this.memory -= bytes;
  }

  /** Area of a CPU, allocated on first use. */
  cpuArea(cpu: Cpu, words: number): Area {
    if (cpu.area === null) cpu.area = this.allocArea(words, `cpu ${cpu.id} area`);
    return cpu.area;
  }

  // ---- descriptors ----------------------------------------------------------

  open(tid?: number): Descriptor {
    if (tid !== undefined) this.thread(tid);
    const max = this.caps.maxDescriptors;
    if (max !== undefined && this.descriptors.size >= max) {
      fail('ENOMEM', `kernel "${this.name}" already has ${max} open descriptors (KCOV_MAX_DESCRIPTORS)`);
    }
    const d = this.dialect.open(this, this.nextFd++);
    this.descriptors.set(d.fd, d);
    return d;
  }

  descriptor(fd: number): Descriptor {
    const d = this.descriptors.get(fd);
    if (d === undefined) fail('EBADF', `fd ${fd} is not an open kcov descriptor in kernel "${this.name}"`);
    return d;
  }

  close(fd: number): void {
    const d = this.descriptor(fd);
    this.descriptors.delete(fd);
    d.closed = true;
    try {
      this.gated(() => this.dialect.close(this, d));
    } catch (e) {
      // The dialect refused before changing anything (it would block): still open.
      d.closed = false;
      this.descriptors.set(fd, d);
      throw e;
    }
    this.changed();
  }

  command(cmd: string): Command | undefined {
    const byName = this.commandsByName.get(cmd);
    if (byName !== undefined) return byName;
    const nr = /^0[xX][0-9a-fA-F]{1,8}$/.test(cmd) ? parseInt(cmd, 16) : /^[0-9]{1,10}$/.test(cmd) ? Number(cmd) : NaN;
    return Number.isNaN(nr) ? undefined : this.commandsByNr.get(nr);
  }

  ioctl(fd: number, cmd: string, tid: number, arg: unknown): IoctlResult {
    const d = this.descriptor(fd);
    const command = this.command(cmd);
    if (command === undefined) {
      fail(this.dialect.unknownCommand, `ioctl ${cmd}: not a ${this.dialect.name} kcov request`);
    }
    const thread = this.thread(tid);
    const ret = this.gated(() => command.run({ kernel: this, d, thread, arg }));
    this.changed();
    return { ret, descriptor: d };
  }

  /** What mmap of the descriptor shows, or the dialect's mmap errno. */
  mapping(d: Descriptor): Mapping {
    const m = this.dialect.mapped !== undefined ? this.dialect.mapped(this, d) : defaultMapping(d);
    if (m === null) fail(this.dialect.mmapErrno, `fd ${d.fd} has no coverage buffer yet (mmap fails)`);
    return m;
  }

  /** `cover[0] = count` from userspace. */
  setCount(d: Descriptor, count: number): Mapping {
    const m = this.mapping(d);
    this.gated(() => (m.trace.count = count));
    if (count > m.trace.capacity(1)) this.countWritten.add(m.trace.buffer);
    this.changed();
    return m;
  }

  /** Read-and-reset: count 0 and, under KCOV_UNIQUE_ENABLE, a clear bitmap. */
  resetCoverage(d: Descriptor): void {
    const m = this.mapping(d);
    this.gated(() => {
      if (m.bitmapWords > 0) m.area.u32.fill(0, 0, m.bitmapWords * 2);
      m.trace.count = 0;
    });
    this.changed();
  }

  // ---- threads --------------------------------------------------------------

  /** The thread `tid`, created as the only thread of process `tid` if new. */
  thread(tid: number): Thread {
    let t = this.threads.get(tid);
    if (t === undefined) {
      this.roomForThread();
      t = new Thread(tid, tid);
      this.threads.set(tid, t);
    }
    return t;
  }

  getThread(tid: number): Thread {
    const t = this.threads.get(tid);
    if (t === undefined) fail('ESRCH', `no thread ${tid} in kernel "${this.name}"`);
    return t;
  }

  /** fork/clone. An existing tid is returned as is when the request agrees with it. */
  createThread(tid: number, pid?: number, parentTid?: number): { thread: Thread; created: boolean } {
    const existing = this.threads.get(tid);
    if (existing !== undefined) {
      if (pid !== undefined && pid !== existing.pid) {
        fail('EEXIST', `thread ${tid} exists in process ${existing.pid}, not ${pid}`);
      }
      return { thread: existing, created: false };
    }
    const parent = parentTid === undefined ? undefined : this.getThread(parentTid);
    this.roomForThread();
    const t = new Thread(tid, pid ?? tid);
    if (parent !== undefined) this.dialect.fork(this, parent, t);
    this.threads.set(tid, t);
    return { thread: t, created: true };
  }

  exitThread(tid: number): void {
    const t = this.getThread(tid);
    this.gated(() => {
      this.dialect.exit(this, t);
      this.threads.delete(tid);
    });
    this.changed();
  }

  private roomForThread(): void {
    const max = this.caps.maxThreads;
    if (max !== undefined && this.threads.size >= max) {
      fail('ENOMEM', `kernel "${this.name}" already has ${max} threads (KCOV_MAX_THREADS)`);
    }
  }

  // ---- change notification (long-poll) ----------------------------------------

  /** Call `fn` after each change that may move a count; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => {
      this.listeners.delete(fn);
    };
  }

  /** Tell the listeners (synchronously; each only schedules its own re-check). */
  changed(): void {
    if (this.listeners.size === 0) return;
    for (const fn of [...this.listeners]) fn();
  }

  // ---- events ---------------------------------------------------------------

  target(t: Thread): TraceTarget | null {
    return this.dialect.target !== undefined ? this.dialect.target(this, t) : t.trace;
  }

  /** A binary batch executed by thread `tid`. Whole records or nothing. */
  eventsBinary(tid: number, kind: TraceMode, chunks: readonly Uint8Array[], length: number): EventResult {
    const seg = binarySegment(kind, chunks, length);
    return this.apply(this.target(this.thread(tid)), [seg]);
  }

  /** A JSON batch executed by thread `tid`, decoded whole before anything is written. */
  eventsJson(tid: number, body: Record<string, unknown>, order?: readonly string[]): EventResult {
    const segs = decodeJsonEvents(body, order);
    return this.apply(this.target(this.thread(tid)), segs);
  }

  apply(target: TraceTarget | null, segs: readonly Segment[]): EventResult {
    const r = applySegments(target, segs);
    this.stats.accepted += r.accepted;
    this.stats.dropped += r.dropped;
    this.stats.ignored += r.ignored;
    if (r.count !== null) this.changed();
    return r;
  }

  /** Guard index of a PC, assigned on first sight. */
  guardIndex(lo: number, hi: number): number {
    const key = hi * 0x1_0000_0000 + lo; // exact below 2^53; above, fall back to a string
    const k = Number.isSafeInteger(key) ? String(key) : `${hi}:${lo}`;
    let idx = this.guards.get(k);
    if (idx === undefined) {
      // Past KCOV_MAX_GUARDS a PC gets no guard: like a PC beyond the bitmap, recorded and never de-duplicated.
      if (this.caps.maxGuards !== undefined && this.guards.size >= this.caps.maxGuards) return Number.MAX_SAFE_INTEGER;
      idx = this.guards.size + 1; // init_pc_guard: the first index is 1, bit 0 is never used
      this.guards.set(k, idx);
    }
    return idx;
  }

  // ---- remote coverage ----------------------------------------------------------

  private remoteOp<K extends keyof Dialect>(op: K): NonNullable<Dialect[K]> {
    const f = this.dialect[op];
    if (f === undefined) fail('EOPNOTSUPP', `${this.dialect.name} kcov has no ${String(op)}`);
    return (f as (...a: unknown[]) => unknown).bind(this.dialect) as NonNullable<Dialect[K]>;
  }

  remoteKey(spec: RemoteSpec): string {
    return this.remoteOp('remoteKey')(this, spec);
  }

  registerRemote(spec: RemoteSpec): boolean {
    const key = this.remoteKey(spec);
    const max = this.caps.maxRemotes;
    if (max !== undefined && this.remotes.size >= max && !this.remotes.has(key)) {
      fail('ENOMEM', `kernel "${this.name}" already has ${max} remotes (KCOV_MAX_REMOTES)`);
    }
    return this.remoteOp('registerRemote')(this, key);
  }

  unregisterRemote(spec: RemoteSpec): void {
    const key = this.remoteKey(spec);
    this.gated(() => this.remoteOp('unregisterRemote')(this, key));
  }

  remotesView(): unknown[] {
    return this.dialect.remotesView !== undefined ? this.dialect.remotesView(this) : [];
  }

  /** POST /threads/{tid}/remote: a section stays open on the thread until DELETE. */
  enterThreadSection(tid: number, spec: RemoteSpec): Thread {
    const key = this.remoteKey(spec);
    const t = this.thread(tid);
    this.remoteOp('enterSection')(this, { context: 'task', thread: t }, key);
    return t;
  }

  leaveThreadSection(tid: number): Thread {
    const t = this.getThread(tid);
    this.remoteOp('leaveSection')(this, { context: 'task', thread: t });
    this.changed();
    return t;
  }

  cpu(n: number): Cpu {
    const c = this.cpus[n];
    if (c === undefined) fail('ENOENT', `kernel "${this.name}" has ${this.ncpus} CPUs; no cpu ${n}`);
    return c;
  }

  /**
   * One whole remote section in one request: enter, the events, leave. The
   * events are decoded before the section starts, so a bad body changes nothing.
   */
  oneShotSection(
    spec: RemoteSpec,
    where: { context: 'task'; tid: number } | { context: 'softirq' | 'interrupt'; cpu: number; tid?: number | undefined },
    decode: () => Segment[],
  ): EventResult & SectionLeave {
    const key = this.remoteKey(spec);
    const enter = this.remoteOp('enterSection');
    const leave = this.remoteOp('leaveSection');
    const segs = decode();
    const site: SectionSite = where.context === 'task'
      ? { context: 'task', thread: this.thread(where.tid) }
      : { context: where.context, cpu: this.cpu(where.cpu), thread: where.tid === undefined ? null : this.thread(where.tid) };
    if (site.context === 'task' && site.thread.section !== null) {
      fail('EBUSY', `thread ${site.thread.tid} is already in a remote section on ${site.thread.section.remote}`);
    }
    if (site.context !== 'task' && site.cpu.section !== null) {
      fail('EBUSY', `cpu ${site.cpu.id} is already running a remote section`);
    }
    enter(this, site, key);
    const section = site.context === 'task' ? site.thread.section : site.cpu.section;
    // A section the dialect did not open (handle not registered, ...) traces nothing.
    const target = section === null ? null : section.target;
    const r = this.apply(target, segs);
    if (section === null) return r;
    const left = leave(this, site);
    if (left === undefined) return r;
    const { lost, ...rest } = left;
    if (lost !== undefined && lost > 0) {
      r.accepted -= lost;
      r.dropped += lost;
      this.stats.accepted -= lost;
      this.stats.dropped += lost;
    }
    return { ...r, ...rest };
  }

  silence(tid: number, on: boolean): Thread {
    const t = on ? this.thread(tid) : this.getThread(tid);
    this.remoteOp('silence')(this, t, on);
    return t;
  }

  // ---- teardown -------------------------------------------------------------

  /** Free everything this kernel holds. */
  destroy(): void {
    this.cover.settle();
    this.dialect.destroy?.(this);
    for (const t of [...this.threads.values()]) this.dialect.exit(this, t);
    this.threads.clear();
    for (const fd of [...this.descriptors.keys()]) this.close(fd);
    for (const cpu of this.cpus) {
      this.freeArea(cpu.area);
      cpu.area = null;
    }
    this.remotes.clear();
    // Whatever a dialect still held is released with the kernel.
    if (this.memory !== 0) {
      this.budget.release(this.memory);
      this.memory = 0;
    }
    this.liveBuffers.clear();
    this.cover.release();
    this.changed();
  }
}

function defaultMapping(d: Descriptor): Mapping | null {
  const area = d.area;
  const trace = d.trace();
  if (area === null || trace === null) return null;
  return { area, trace, mode: d.mode ?? d.lastMode, bitmapWords: trace.base - area.base };
}
