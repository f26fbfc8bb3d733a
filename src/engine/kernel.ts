/**
 * One emulated kernel: its fd table, threads and CPUs, read like the kernel's
 * own file. The dialect decides what each ioctl, close and exit does; the
 * kernel owns the shared mechanics (tables, allocation, event application)
 * and delegates each other concern to a part of its own:
 *   account  (kernel/memory.ts)   every byte charged to KCOV_MEMORY_LIMIT
 *   remotes  (kernel/remotes.ts)  remote registry and sections
 *   changes  (kernel/notify.ts)   who waits for which change
 *   guards   (kernel/guards.ts)   KCOV_UNIQUE_ENABLE's PC indices
 */
import { WORD, type Area, type TraceMode } from './area.js';
import { CoverUnion } from './cover/union.js';
import type { Command, Dialect, DialectLimits, Mapping } from './dialect.js';
import { fail } from './errno.js';
import { applySegments, binarySegment, decodeJsonEvents, type EventResult, type Segment } from './events.js';
import { COST } from './kernel/costs.js';
import { GuardIndex } from './kernel/guards.js';
import { KernelMemory, type AreaCategory } from './kernel/memory.js';
import { ChangeNotifier } from './kernel/notify.js';
import { RemoteRegistry } from './kernel/registry.js';
import { RemoteCoverage } from './kernel/remotes.js';
import type { MemoryBudget } from './memory.js';
import { Cpu, type DialectTypes, type TraceTarget } from './model.js';

/** Service caps on a kernel's tables; not kernel rules, so they fail with ENOMEM like an allocation would. */
export interface KernelCaps {
  readonly maxDescriptors?: number | undefined;
  readonly maxThreads?: number | undefined;
  readonly maxRemotes?: number | undefined;
  /** Distinct PCs that get a KCOV_UNIQUE_ENABLE guard; later PCs get none (recorded, never de-duplicated). */
  readonly maxGuards?: number | undefined;
}

export interface KernelOptions<X extends DialectTypes = DialectTypes> {
  readonly name: string;
  readonly dialect: Dialect<X>;
  readonly ncpus: number;
  readonly budget: MemoryBudget;
  /** Largest size the size ioctl accepts; the dialect's own limit when absent. */
  readonly maxEntries?: number | undefined;
  /** Words of each per-CPU remote area (Linux CONFIG_KCOV_IRQ_AREA_SIZE). */
  readonly cpuAreaWords?: number | undefined;
  /** Build options in force (the dialect's defaults with the creator's changes). */
  readonly config?: Readonly<Record<string, boolean>> | undefined;
  /** Caps that keep a kernel bounded (KCOV_MAX_*); past each, ENOMEM. Unlimited when absent. */
  readonly caps?: KernelCaps | undefined;
  /** Fleet name of the cover union; the kernel's name when absent. */
  readonly corpus?: string | undefined;
  /** Keep the cover union (KCOV_COVER); on when absent. */
  readonly cover?: boolean | undefined;
  /** Run `fn` later (at a pause in the traffic when `idle`, else between requests); false when there is no such place (see Engine.background). */
  readonly later?: ((fn: () => void, idle: boolean) => boolean) | undefined;
}

export interface IoctlResult<X extends DialectTypes = DialectTypes> {
  ret: number;
  descriptor: X['descriptor'];
}

export class Kernel<X extends DialectTypes = DialectTypes> {
  /** [I] */
  readonly name: string;
  readonly dialect: Dialect<X>;
  readonly ncpus: number;
  readonly maxEntries: number | undefined;
  readonly cpuAreaWords: number | undefined;
  /** [I] service caps (KCOV_MAX_*). */
  readonly caps: KernelCaps;
  /** [I] build options (Linux CONFIG_KCOV_ENABLE_COMPARISONS, CONFIG_KCOV_UNIQUE). */
  readonly config: Readonly<Record<string, boolean>>;
  /** [D] the dialect's own state of this kernel (remote registry, section pools). */
  readonly state: X['state'];
  /** [K] records seen on each path, for metrics. */
  readonly stats = { accepted: 0, dropped: 0, ignored: 0 };

  /** The kernel's memory account. */
  readonly account: KernelMemory;
  /** Remote coverage: registry and sections. */
  readonly remotes: RemoteCoverage<X>;
  /** Change notification (long-poll, barriers). */
  readonly changes: ChangeNotifier;
  /** Cumulative coverage; settled before and resynced after every gated operation (see cover/union.ts). */
  readonly cover: CoverUnion;
  private readonly guards: GuardIndex;

  /** [K] open fds only; a closed descriptor held by a thread is not here. */
  private readonly fds = new Map<number, X['descriptor']>();
  /** [K] */
  private readonly tids = new Map<number, X['thread']>();
  private readonly cpuList: readonly Cpu<X>[];
  /** [K] fds are never reused, so a stale fd fails with EBADF instead of reaching a newer file. */
  private nextFd = 3;
  private readonly commandsByName = new Map<string, Command<X>>();
  private readonly commandsByNr = new Map<number, Command<X>>();
  /** [K] threads created inside the current atomic() call, undone if it fails. */
  private created: X['thread'][] | null = null;

  constructor(opts: KernelOptions<X>) {
    this.name = opts.name;
    this.dialect = opts.dialect;
    this.ncpus = opts.ncpus;
    this.maxEntries = opts.maxEntries;
    this.cpuAreaWords = opts.cpuAreaWords;
    this.caps = opts.caps ?? {};
    this.config = opts.config ?? opts.dialect.config ?? {};
    this.account = new KernelMemory(opts.budget);
    this.changes = new ChangeNotifier(this.account);
    this.guards = new GuardIndex(this.caps.maxGuards, this.account);
    this.cpuList = Array.from({ length: opts.ncpus }, (_, i) => new Cpu<X>(i));
    const account = this.account;
    const maxRemotes = this.caps.maxRemotes;
    const name = this.name;
    this.state = opts.dialect.createState({ registry: () => new RemoteRegistry(account, maxRemotes, name) });
    this.remotes = new RemoteCoverage(this);
    for (const c of opts.dialect.commands) {
      this.commandsByName.set(c.name, c);
      this.commandsByNr.set(c.nr, c);
    }
    const charger = { charge: (b: number, what: string) => account.charge(b, what, 'cover'), release: (b: number) => account.release(b, 'cover') };
    this.cover = new CoverUnion(this as unknown as Kernel, charger, opts.corpus ?? opts.name, opts.cover ?? true, opts.later ?? null);
  }

  /**
   * The gate of a change that may also write records (a remote unregistered): pending
   * records are folded into the cover union first; the marks are resynced after.
   * Changes that write none (ioctls, count writes, resets, closes, thread exits) take
   * gatedLazy().
   */
  gated<T>(fn: () => T): T {
    this.cover.settle();
    try {
      return fn();
    } finally {
      this.cover.resync();
    }
  }

  /**
   * The gate of an operation that writes no record (an ioctl, a count write, a reset,
   * a close, a thread exit): nothing is folded first; what it hid is folded after, the rest is left
   * to the background. `d`: it changes nothing but that descriptor.
   */
  gatedLazy<T>(fn: () => T, d?: X['descriptor']): T {
    const before = this.cover.standing(d);
    try {
      return fn();
    } finally {
      this.cover.resyncAfter(before);
    }
  }

  /** Size limits of this kernel (its max_entries, else the dialect's). */
  limits(): DialectLimits {
    return this.dialect.limits(this.maxEntries);
  }

  // ---- memory -------------------------------------------------------------

  /** Bytes held by this kernel's areas. */
  get memory(): number {
    return this.account.areaBytes;
  }

  /** Allocate a zeroed area of `words` words, charged to the budget (ENOMEM past it). */
  allocArea(words: number, what: string, category?: AreaCategory): Area {
    this.cover.flushRetiredOfSize(words * WORD);
    return this.account.allocArea(words, what, category);
  }

  freeArea(area: Area | null): void {
    // The union may keep a freed area (still charged) until its records are folded.
    if (area !== null && this.cover.freeing(area)) return;
    this.account.freeArea(area);
  }

  /** Area of a CPU, allocated on first use. */
  cpuArea(cpu: Cpu<X>, words: number): Area {
    if (cpu.area === null) cpu.area = this.account.allocArea(words, `cpu ${cpu.id} area`, 'sections');
    return cpu.area;
  }

  // ---- descriptors ----------------------------------------------------------

  /** Open descriptors by fd. */
  get descriptors(): ReadonlyMap<number, X['descriptor']> {
    return this.fds;
  }

  open(tid?: number): X['descriptor'] {
    return this.atomic(() => {
      if (tid !== undefined) this.ensureThread(tid);
      const max = this.caps.maxDescriptors;
      if (max !== undefined && this.fds.size >= max) {
        fail('ENOMEM', `kernel "${this.name}" already has ${max} open descriptors (KCOV_MAX_DESCRIPTORS)`);
      }
      this.account.charge(COST.descriptor, 'open of /dev/kcov', 'descriptors');
      const d = this.dialect.open(this, this.nextFd++);
      this.fds.set(d.fd, d);
      return d;
    });
  }

  descriptor(fd: number): X['descriptor'] {
    const d = this.fds.get(fd);
    if (d === undefined) fail('EBADF', `fd ${fd} is not an open kcov descriptor in kernel "${this.name}"`);
    return d;
  }

  close(fd: number): void {
    const d = this.descriptor(fd);
    this.fds.delete(fd);
    d.closed = true;
    try {
      this.gatedLazy(() => this.dialect.close(this, d));
    } catch (e) {
      // The dialect refused before changing anything (it would block): still open.
      d.closed = false;
      this.fds.set(fd, d);
      throw e;
    }
    this.account.release(COST.descriptor, 'descriptors');
    this.changes.fdChanged(fd);
  }

  command(cmd: string): Command<X> | undefined {
    const byName = this.commandsByName.get(cmd);
    if (byName !== undefined) return byName;
    const nr = /^0[xX][0-9a-fA-F]{1,8}$/.test(cmd) ? parseInt(cmd, 16) : /^[0-9]{1,10}$/.test(cmd) ? Number(cmd) : NaN;
    return Number.isNaN(nr) ? undefined : this.commandsByNr.get(nr);
  }

  ioctl(fd: number, cmd: string, tid: number, arg: unknown): IoctlResult<X> {
    const d = this.descriptor(fd);
    const command = this.command(cmd);
    if (command === undefined) {
      fail(this.dialect.unknownCommand, `ioctl ${cmd}: not a ${this.dialect.name} kcov request`);
    }
    const ret = this.atomic(() => this.gatedLazy(() => command.run({ kernel: this, d, thread: this.ensureThread(tid), arg }), d));
    // What the fd maps, or its count, may have changed.
    this.changes.descriptorChanged(fd, d.area === null ? null : d.area.buffer);
    return { ret, descriptor: d };
  }

  /** What mmap of the descriptor shows, or the dialect's mmap errno. */
  mapping(d: X['descriptor']): Mapping {
    const m = this.dialect.mapped !== undefined ? this.dialect.mapped(this, d) : defaultMapping(d);
    if (m === null) fail(this.dialect.mmapErrno, `fd ${d.fd} has no coverage buffer yet (mmap fails)`);
    return m;
  }

  /** `cover[0] = count` from userspace. */
  setCount(d: X['descriptor'], count: number): Mapping {
    const m = this.mapping(d);
    this.gatedLazy(() => (m.trace.count = count), d);
    if (count > m.trace.capacity(1)) this.account.markCountWritten(m.trace);
    this.changes.touched(m.trace.buffer);
    return m;
  }

  /** Read-and-reset: count 0 and, under KCOV_UNIQUE_ENABLE, a clear bitmap. */
  resetCoverage(d: X['descriptor']): void {
    const m = this.mapping(d);
    this.gatedLazy(() => {
      if (m.bitmapWords > 0) m.area.u32.fill(0, 0, m.bitmapWords * 2);
      m.trace.count = 0;
    }, d);
    this.changes.touched(m.trace.buffer);
  }

  // ---- threads --------------------------------------------------------------

  /** Threads by tid. */
  get threads(): ReadonlyMap<number, X['thread']> {
    return this.tids;
  }

  /**
   * Run one request's changes: threads `fn` creates on sight are removed again
   * when it throws (and nothing else holds them), so a failed request leaves
   * no thread behind. Nested calls join the outer one.
   */
  atomic<T>(fn: () => T): T {
    if (this.created !== null) return fn();
    const created: X['thread'][] = [];
    this.created = created;
    try {
      return fn();
    } catch (e) {
      for (let i = created.length - 1; i >= 0; i--) {
        const t = created[i]!;
        if (this.tids.get(t.tid) === t && t.idle) this.dropThread(t);
      }
      throw e;
    } finally {
      this.created = null;
    }
  }

  /** The thread `tid`, created as the only thread of process `tid` if new. */
  ensureThread(tid: number): X['thread'] {
    const t = this.tids.get(tid);
    return t !== undefined ? t : this.addThread(tid, tid);
  }

  /** The thread `tid`, or ESRCH. */
  findThread(tid: number): X['thread'] {
    const t = this.tids.get(tid);
    if (t === undefined) fail('ESRCH', `no thread ${tid} in kernel "${this.name}"`);
    return t;
  }

  /**
   * fork/clone. An existing tid is returned as is when the request agrees
   * with it. A parent that does not exist yet is created first, as the only
   * thread of its own process (API.md: the parent of a fork is the calling
   * thread, and a tid not seen yet is such a thread).
   */
  createThread(tid: number, pid?: number, parentTid?: number): { thread: X['thread']; created: boolean } {
    const existing = this.tids.get(tid);
    if (existing !== undefined) {
      if (pid !== undefined && pid !== existing.pid) {
        fail('EEXIST', `thread ${tid} exists in process ${existing.pid}, not ${pid}`);
      }
      return { thread: existing, created: false };
    }
    if (parentTid === tid) fail('EINVAL', `thread ${tid} cannot be its own parent`);
    return this.atomic(() => {
      const parent = parentTid === undefined ? undefined : this.ensureThread(parentTid);
      const t = this.addThread(tid, pid ?? tid, parent);
      return { thread: t, created: true };
    });
  }

  exitThread(tid: number): void {
    const t = this.findThread(tid);
    const section = t.section;
    this.gatedLazy(() => {
      this.dialect.exit(this, t);
      this.dropThread(t);
    });
    // A section it held is gone (a kr_barrier may go through now).
    if (section !== null) this.changes.remoteChanged(section.remote);
    this.changed();
  }

  /** A new thread in the table, charged; `parent` forks it. */
  private addThread(tid: number, pid: number, parent?: X['thread']): X['thread'] {
    const max = this.caps.maxThreads;
    if (max !== undefined && this.tids.size >= max) {
      fail('ENOMEM', `kernel "${this.name}" already has ${max} threads (KCOV_MAX_THREADS)`);
    }
    this.account.charge(COST.thread, `thread ${tid}`, 'threads');
    const t = this.dialect.newThread(tid, pid);
    if (parent !== undefined) this.dialect.fork(this, parent, t);
    this.tids.set(tid, t);
    this.created?.push(t);
    return t;
  }

  private dropThread(t: X['thread']): void {
    this.tids.delete(t.tid);
    this.account.release(COST.thread, 'threads');
  }

  // ---- CPUs -------------------------------------------------------------------

  get cpus(): readonly Cpu<X>[] {
    return this.cpuList;
  }

  cpu(n: number): Cpu<X> {
    const c = this.cpuList[n];
    if (c === undefined) fail('ENOENT', `kernel "${this.name}" has ${this.ncpus} CPUs; no cpu ${n}`);
    return c;
  }

  // ---- change notification (long-poll) ----------------------------------------

  /** Call `fn` after each change that may move a count; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    return this.changes.watch(fn);
  }

  /** Tell the kernel-wide waiters something changed that no resource names. */
  changed(): void {
    this.changes.changed();
  }

  // ---- events ---------------------------------------------------------------

  target(t: X['thread']): TraceTarget | null {
    return this.dialect.target !== undefined ? this.dialect.target(this, t) : t.trace;
  }

  /** A binary batch executed by thread `tid`. Whole records or nothing. */
  eventsBinary(tid: number, kind: TraceMode, chunks: readonly Uint8Array[], length: number): EventResult {
    return this.eventsSegments(tid, [binarySegment(kind, chunks, length)]);
  }

  /** A JSON batch executed by thread `tid`, decoded whole before anything is written. */
  eventsJson(tid: number, body: Record<string, unknown>, order?: readonly string[]): EventResult {
    return this.eventsSegments(tid, decodeJsonEvents(body, order));
  }

  /** A batch already decoded into segments (a scanned JSON body, or the two above), applied atomically by thread `tid`. */
  eventsSegments(tid: number, segs: readonly Segment[]): EventResult {
    // A known thread: the batch creates nothing, so there is nothing to undo (and no closure a batch).
    const t = this.tids.get(tid);
    if (t !== undefined) return this.apply(this.target(t), segs);
    return this.atomic(() => this.apply(this.target(this.ensureThread(tid)), segs));
  }

  apply(target: TraceTarget | null, segs: readonly Segment[]): EventResult {
    const r = applySegments(target, segs);
    this.stats.accepted += r.accepted;
    this.stats.dropped += r.dropped;
    this.stats.ignored += r.ignored;
    if (r.count !== null && target !== null) this.changes.touched(target.area.buffer);
    if (r.accepted > 0) this.cover.appended(r.accepted);
    return r;
  }

  /** Guard index of a PC, assigned on first sight. */
  guardIndex(lo: number, hi: number): number {
    return this.guards.indexOf(lo, hi);
  }

  // ---- teardown -------------------------------------------------------------

  /** Free everything this kernel holds. */
  destroy(): void {
    this.cover.settle();
    this.dialect.destroy?.(this);
    for (const t of [...this.tids.values()]) this.dialect.exit(this, t);
    this.tids.clear();
    for (const fd of [...this.fds.keys()]) this.close(fd);
    for (const cpu of this.cpuList) {
      this.freeArea(cpu.area);
      cpu.area = null;
    }
    this.cover.release();
    this.guards.release();
    // Whatever a dialect still held is released with the kernel.
    this.account.releaseAll();
    this.changes.clear();
  }
}

function defaultMapping(d: DialectTypes['descriptor']): Mapping | null {
  const area = d.area;
  const trace = d.trace();
  if (area === null || trace === null) return null;
  return { area, trace, mode: d.mode ?? d.lastMode, bitmapWords: trace.base - area.base };
}
