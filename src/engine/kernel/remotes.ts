/**
 * Remote coverage of one kernel: the registry (as the dialect keeps it) and
 * remote sections on threads and CPUs. The dialect supplies the rules
 * (Dialect.remoteKey, enterSection, ...); this part checks the service caps,
 * resolves threads and CPUs, and runs a one-shot section as one unit.
 */
import type { Dialect, RemoteSpec, SectionLeave, SectionSite } from '../dialect.js';
import { fail } from '../errno.js';
import type { EventResult, Segment } from '../events.js';
import type { Kernel } from '../kernel.js';
import type { DialectTypes } from '../model.js';

/** Where a one-shot section runs. */
export type SectionWhere =
  | { context: 'task'; tid: number }
  | { context: 'softirq' | 'interrupt'; cpu: number; tid?: number | undefined };

type RemoteHook = 'remoteKey' | 'registerRemote' | 'unregisterRemote' | 'enterSection' | 'leaveSection' | 'silence';

export class RemoteCoverage<X extends DialectTypes = DialectTypes> {
  private readonly kernel: Kernel<X>;

  constructor(kernel: Kernel<X>) {
    this.kernel = kernel;
  }

  private hook<K extends RemoteHook>(op: K): NonNullable<Dialect<X>[K]> {
    const dialect = this.kernel.dialect;
    const f = dialect[op];
    if (f === undefined) fail('EOPNOTSUPP', `${dialect.name} kcov has no ${op}`);
    return f;
  }

  /** Remotes registered now. */
  get count(): number {
    return this.kernel.state.remotes.size;
  }

  /** Canonical keys of the registered remotes. */
  keys(): string[] {
    return [...this.kernel.state.remotes.keys()];
  }

  /** The canonical key of a remote (EINVAL when malformed, EOPNOTSUPP without remote coverage). */
  key(spec: RemoteSpec): string {
    return this.hook('remoteKey').call(this.kernel.dialect, this.kernel, spec);
  }

  /** The kernel side registers a remote; true when new. */
  register(spec: RemoteSpec): boolean {
    const key = this.key(spec);
    const max = this.kernel.caps.maxRemotes;
    if (max !== undefined && this.count >= max && !this.kernel.state.remotes.has(key)) {
      fail('ENOMEM', `kernel "${this.kernel.name}" already has ${max} remotes (KCOV_MAX_REMOTES)`);
    }
    return this.hook('registerRemote').call(this.kernel.dialect, this.kernel, key);
  }

  unregister(spec: RemoteSpec): void {
    const key = this.key(spec);
    this.hook('unregisterRemote').call(this.kernel.dialect, this.kernel, key);
  }

  /** GET /remotes */
  view(): unknown[] {
    const d = this.kernel.dialect;
    return d.remotesView !== undefined ? d.remotesView(this.kernel) : [];
  }

  /** POST /threads/{tid}/remote: a section stays open on the thread until DELETE. */
  enterThreadSection(tid: number, spec: RemoteSpec): X['thread'] {
    const key = this.key(spec);
    const t = this.kernel.ensureThread(tid);
    this.hook('enterSection').call(this.kernel.dialect, this.kernel, { context: 'task', thread: t }, key);
    return t;
  }

  leaveThreadSection(tid: number): X['thread'] {
    const t = this.kernel.findThread(tid);
    this.hook('leaveSection').call(this.kernel.dialect, this.kernel, { context: 'task', thread: t });
    this.kernel.changed();
    return t;
  }

  /**
   * One whole remote section in one request: enter, the events, leave. The
   * events are decoded before the section starts, so a bad body changes nothing.
   */
  oneShot(spec: RemoteSpec, where: SectionWhere, decode: () => Segment[]): EventResult & SectionLeave {
    const k = this.kernel;
    const key = this.key(spec);
    const enter = this.hook('enterSection');
    const leave = this.hook('leaveSection');
    const segs = decode();
    const site: SectionSite<X> = where.context === 'task'
      ? { context: 'task', thread: k.ensureThread(where.tid) }
      : { context: where.context, cpu: k.cpu(where.cpu), thread: where.tid === undefined ? null : k.ensureThread(where.tid) };
    if (site.context === 'task' && site.thread.section !== null) {
      fail('EBUSY', `thread ${site.thread.tid} is already in a remote section on ${site.thread.section.remote}`);
    }
    if (site.context !== 'task' && site.cpu.section !== null) {
      fail('EBUSY', `cpu ${site.cpu.id} is already running a remote section`);
    }
    enter.call(k.dialect, k, site, key);
    const section = site.context === 'task' ? site.thread.section : site.cpu.section;
    // A section the dialect did not open (handle not registered, ...) traces nothing.
    const target = section === null ? null : section.target;
    const r = k.apply(target, segs);
    if (section === null) return r;
    const left = leave.call(k.dialect, k, site);
    if (left === undefined) return r;
    const { lost, ...rest } = left;
    if (lost !== undefined && lost > 0) {
      r.accepted -= lost;
      r.dropped += lost;
      k.stats.accepted -= lost;
      k.stats.dropped += lost;
    }
    return { ...r, ...rest };
  }

  /** NetBSD kcov_silence_enter / _leave on thread `tid`. */
  silence(tid: number, on: boolean): X['thread'] {
    const t = on ? this.kernel.ensureThread(tid) : this.kernel.findThread(tid);
    this.hook('silence').call(this.kernel.dialect, this.kernel, t, on);
    return t;
  }
}
