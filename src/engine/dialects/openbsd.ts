/**
 * OpenBSD sys/dev/kcov.c v1.51 (sys/sys/kcov.h v1.9). Names follow the
 * driver: a descriptor is a kcov_dev (kd_state, kd_mode, kd_nmemb, kd_kr), a
 * remote a kcov_remote (kr_state, kr_kd, kr_nsections), a thread's `kcov` is
 * p->p_kd.
 *
 * Invariants, each enforced where it is stated:
 *  - a thread's p_kd is set by KIOENABLE only when no remote is attached
 *    ("Remote coverage is mutually exclusive"), or by a task-context remote
 *    section (kcov_remote_enter) for the length of the section;
 *  - kd->kd_kr and kr->kr_kd point at each other or kd_kr is NULL
 *    (kcov_remote_attach, kr_free);
 *  - nothing frees a remote or disables its descriptor while sections are
 *    open on it (kr_barrier): the operation throws WouldBlock before changing
 *    anything and the HTTP layer retries it for a bounded time;
 *  - a closed descriptor still traced by a thread is DYING, out of the fd
 *    table, and freed by that thread's exit (kcov_exit).
 */
import { type Area, type TraceMode, strideOf, WORD } from '../area.js';
import { int32Arg, intModeArg, objectArg, ulongArg } from '../args.js';
import type { Command, Dialect, Mapping, RemoteSpec } from '../dialect.js';
import { WouldBlock, fail } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { Descriptor, Thread, type DialectState, type Section, type TraceTarget } from '../model.js';
import { u64ToSafeNumber } from '../../wire/u64.js';
import { DIALECT_WIRE, ioctl } from '../../wire/ioctls.js';

/** KCOV_BUF_MAX_NMEMB (512 << 10) entries. */
export const KCOV_BUF_MAX_NMEMB = 512 << 10;
export const KCOV_MODE_NONE = 0;
export const KCOV_MODE_TRACE_PC: number = DIALECT_WIRE.openbsd.modes.pc;
export const KCOV_MODE_TRACE_CMP: number = DIALECT_WIRE.openbsd.modes.cmp;
export const KCOV_REMOTE_COMMON = 0;
const INT_MAX = 0x7fffffff;
const PAGE_SIZE = 4096;

export type ObsdState = 'NONE' | 'READY' | 'TRACE' | 'DYING';

/** OpenBSD's types: kcov_dev as the descriptor, kr_list as the kernel's state. */
export interface ObsdTypes {
  readonly descriptor: ObsdDescriptor;
  readonly thread: Thread<ObsdTypes>;
  readonly section: Section;
  readonly state: ObsdKernelState;
}

type ObsdKernel = Kernel<ObsdTypes>;

/** The driver's globals of one kernel: kr_list. */
export class ObsdKernelState implements DialectState {
  /** [D] registered remotes by "subsystem:id". */
  readonly remotes = new Map<string, ObsdRemote>();

  areas(): Iterable<Area> {
    return []; // a remote writes into its descriptor's buffer
  }
}

/** struct kcov_remote. */
export interface ObsdRemote {
  /** [I] "subsystem:id", the key of kernel.remotes. */
  readonly key: string;
  readonly subsystem: number;
  /** [I] kr_id: the process (pid) for KCOV_REMOTE_COMMON. */
  readonly id: number;
  /** [D] kr_state: NONE when registered by the kernel side, READY once attached. */
  state: ObsdState;
  /** [D] kr_kd */
  kd: ObsdDescriptor | null;
  /** [D] kr_nsections: threads and CPUs inside a section now. */
  nsections: number;
}

/** struct kcov_dev. */
export class ObsdDescriptor extends Descriptor<ObsdTypes> {
  /** [D] kd_state */
  kstate: ObsdState = 'NONE';
  /** [D] kd_mode */
  kmode = KCOV_MODE_NONE;
  /** [D] kd_nmemb: entries - 1, the first is the count. */
  nmemb = 0;
  /** [D] kd_kr */
  kr: ObsdRemote | null = null;
  /** [D] where events go while kd_mode is set; rebuilt at each KIOENABLE. */
  target: TraceTarget | null = null;

  get state(): string {
    return this.kstate;
  }

  get mode(): TraceMode | null {
    return modeName(this.kmode);
  }

  override extra(): Record<string, unknown> {
    return { remote: this.kr === null ? null : this.kr.key, nmemb: this.area === null ? null : this.nmemb };
  }
}

function modeName(m: number): TraceMode | null {
  return m === KCOV_MODE_TRACE_PC ? 'pc' : m === KCOV_MODE_TRACE_CMP ? 'cmp' : null;
}

const OPENBSD_MODES = DIALECT_WIRE.openbsd.modes;

/**
 * `*(T *)data` after sys_ioctl's copyin of an _IOW argument: JSON null is the
 * NULL pointer of the regress test `state` (EFAULT before the driver runs);
 * absent means a zero value, as for every dialect.
 */
function inArg(arg: unknown, what: string): unknown {
  if (arg === null) fail('EFAULT', `${what}: NULL argument pointer (copyin fails in sys_ioctl)`);
  return arg;
}

/** KIOSETBUFSIZE's largest entries: KCOV_BUF_MAX_NMEMB, or the kernel's max_entries below it. */
function limit(maxEntries: number | undefined): number {
  return Math.min(KCOV_BUF_MAX_NMEMB, maxEntries ?? KCOV_BUF_MAX_NMEMB);
}

function remoteKeyOf(subsystem: number, id: number): string {
  return `${subsystem}:${id}`;
}

/** kr_barrier: sleeps while sections are open; here, refuses before any change. */
function krBarrier(kernel: ObsdKernel, kr: ObsdRemote, what: string): void {
  if (kr.nsections === 0) return;
  const where: string[] = [];
  for (const t of kernel.threads.values()) if (t.section?.remote === kr.key) where.push(`thread ${t.tid}`);
  for (const c of kernel.cpus) if (c.section?.remote === kr.key) where.push(`cpu ${c.id}`);
  throw new WouldBlock(
    `${what}: kr_barrier waits for ${kr.nsections} open section(s) of remote ${kr.key}` +
    (where.length > 0 ? ` (${where.join(', ')})` : ''),
  );
}

/** kr_free: DYING, barrier, unlink from its descriptor and from kr_list. */
function krFree(kernel: ObsdKernel, kr: ObsdRemote, what: string): void {
  krBarrier(kernel, kr, what);
  kr.state = 'DYING';
  if (kr.kd !== null) kr.kd.kr = null;
  kr.kd = null;
  kernel.state.remotes.delete(kr.key);
}

/** kcov_remote_detach */
function remoteDetach(kernel: ObsdKernel, kd: ObsdDescriptor, kr: ObsdRemote, what: string): void {
  if (kr.subsystem === KCOV_REMOTE_COMMON) {
    krFree(kernel, kr, what);
  } else {
    krBarrier(kernel, kr, what);
    kr.state = 'NONE';
    kd.kr = null;
    kr.kd = null;
  }
}

/** kd_free: detach the remote (may block), then release the buffer. */
function kdFree(kernel: ObsdKernel, kd: ObsdDescriptor, what: string): void {
  if (kd.kr !== null) remoteDetach(kernel, kd, kd.kr, what);
  if (kd.owner !== null && kd.owner.kcov === kd) kd.owner.kcov = null;
  kd.owner = null;
  kd.kstate = 'DYING';
  kd.kmode = KCOV_MODE_NONE;
  kernel.freeArea(kd.area);
  kd.area = null;
  kd.target = null;
}

/** kcov_remote_register_locked: null when a live remote has the key (DYING ones are gone at once here). */
function registerLocked(kernel: ObsdKernel, subsystem: number, id: number): ObsdRemote | null {
  const key = remoteKeyOf(subsystem, id);
  if (kernel.state.remotes.has(key)) return null;
  const kr: ObsdRemote = { key, subsystem, id, state: 'NONE', kd: null, nsections: 0 };
  kernel.state.remotes.set(key, kr);
  return kr;
}

/** kd_copy: append all of an interrupt section's records, or none (kd_claim). Returns the records lost. */
function kdCopy(dst: ObsdDescriptor, src: Area, mode: TraceMode): number {
  const nmemb = src.count;
  if (nmemb === 0) return 0;
  const area = dst.area;
  if (area === null) return nmemb;
  const stride = strideOf(mode);
  // kd_claim: `stride * (idx + nmemb) > kd_nmemb` fails, and the area's room is
  // exactly floor(kd_nmemb / stride) - idx since its words are kd_nmemb + 1.
  if (nmemb > area.room(stride)) return nmemb;
  area.appendChunks([src.bytes.subarray(WORD, WORD + nmemb * stride * WORD)], nmemb, stride);
  return 0;
}

export const OPENBSD_COMMANDS: Command<ObsdTypes>[] = [
  {
    ...ioctl('openbsd', 'KIOSETBUFSIZE'),
    run(ctx) {
      const kd = ctx.d;
      const arg = inArg(ctx.arg, 'KIOSETBUFSIZE');
      const nmemb = ulongArg(arg, 'KIOSETBUFSIZE entries');
      // kd_init. KASSERT(kd->kd_buf == NULL) precedes this on a DIAGNOSTIC
      // kernel; without DIAGNOSTIC a second KIOSETBUFSIZE is EBUSY.
      if (kd.kstate !== 'NONE') fail('EBUSY', `KIOSETBUFSIZE: kd_state is ${kd.kstate}, not NONE (the buffer is set once)`);
      const max = limit(ctx.kernel.maxEntries);
      if (nmemb === 0 || nmemb > max) fail('EINVAL', `KIOSETBUFSIZE: ${nmemb} entries is outside 1..${max}`);
      kd.area = ctx.kernel.allocArea(nmemb, `KIOSETBUFSIZE(${nmemb})`);
      kd.nmemb = nmemb - 1;
      kd.kstate = 'READY';
      return 0;
    },
  },
  {
    ...ioctl('openbsd', 'KIOENABLE'),
    run(ctx) {
      const kd = ctx.d;
      const p = ctx.thread;
      const arg = inArg(ctx.arg, 'KIOENABLE');
      // "Only one kcov descriptor can be enabled per thread."
      if (p.kcov !== null) fail('EBUSY', `KIOENABLE: thread ${p.tid} already has a kcov descriptor (fd ${p.kcov.fd}) in p_kd`);
      if (kd.kstate !== 'READY') fail('ENXIO', `KIOENABLE: kd_state is ${kd.kstate}, not READY`);
      const mode = intModeArg(arg, OPENBSD_MODES, 'KIOENABLE mode');
      if (mode !== KCOV_MODE_TRACE_PC && mode !== KCOV_MODE_TRACE_CMP) {
        fail('EINVAL', `KIOENABLE: mode ${mode} is neither KCOV_MODE_TRACE_PC (1) nor KCOV_MODE_TRACE_CMP (2)`);
      }
      kd.kstate = 'TRACE';
      kd.kmode = mode;
      kd.lastMode = modeName(mode)!;
      kd.target = { area: kd.area!, mode: kd.lastMode };
      // "Remote coverage is mutually exclusive."
      if (kd.kr === null) {
        p.kcov = kd;
        kd.owner = p;
      }
      return 0;
    },
  },
  {
    ...ioctl('openbsd', 'KIODISABLE'),
    run(ctx) {
      const kd = ctx.d;
      const p = ctx.thread;
      // "Only the enabled thread may disable itself."
      if (p.kcov !== kd && kd.kr === null) {
        fail('EPERM', `KIODISABLE: thread ${p.tid} is not the one fd ${kd.fd} traces, and no remote is attached`);
      }
      if (kd.kstate !== 'TRACE') fail('ENXIO', `KIODISABLE: kd_state is ${kd.kstate}, not TRACE`);
      if (kd.kr !== null) krBarrier(ctx.kernel, kd.kr, 'KIODISABLE');
      kd.kstate = 'READY';
      kd.kmode = KCOV_MODE_NONE;
      if (kd.owner === p) kd.owner = null;
      // The driver clears p_kd unconditionally: a thread that disables a
      // remote descriptor loses its own binding too.
      const own = p.kcov;
      if (own !== null && own !== kd && own.owner === p) own.owner = null;
      p.kcov = null;
      return 0;
    },
  },
  {
    ...ioctl('openbsd', 'KIOREMOTEATTACH'),
    run(ctx) {
      const kd = ctx.d;
      const a = objectArg(inArg(ctx.arg, 'KIOREMOTEATTACH'), 'KIOREMOTEATTACH');
      const subsystem = int32Arg(a.subsystem, 'KIOREMOTEATTACH subsystem') | 0;
      ulongArg(a.id, 'KIOREMOTEATTACH id');
      // kcov_remote_attach
      if (kd.kstate !== 'READY') fail('ENXIO', `KIOREMOTEATTACH: kd_state is ${kd.kstate}, not READY`);
      if (subsystem !== KCOV_REMOTE_COMMON) {
        fail('EINVAL', `KIOREMOTEATTACH: subsystem ${subsystem} is not KCOV_REMOTE_COMMON (0)`);
      }
      const kr = registerLocked(ctx.kernel, KCOV_REMOTE_COMMON, ctx.thread.pid);
      if (kr === null) {
        fail('EBUSY', `KIOREMOTEATTACH: remote ${remoteKeyOf(0, ctx.thread.pid)} of process ${ctx.thread.pid} is already registered`);
      }
      kr.state = 'READY';
      kr.kd = kd;
      kd.kr = kr;
      return 0;
    },
  },
];

function parseRemotePart(v: unknown, what: string, max: number): number {
  const n = u64ToSafeNumber(v);
  if (n === null || n > max) fail('EINVAL', `remote ${what} ${JSON.stringify(v)} is not an integer in 0..${max}`);
  return n;
}

export const openbsd: Dialect<ObsdTypes> = {
  name: 'openbsd',
  commands: OPENBSD_COMMANDS,
  unknownCommand: DIALECT_WIRE.openbsd.unknownIoctl,
  // kcovmmap returns -1 for every page; uvm_mmapfile turns that into EINVAL.
  mmapErrno: 'EINVAL',
  limits: (maxEntries) => ({ minEntries: 1, maxEntries: limit(maxEntries) }),

  createState() {
    return new ObsdKernelState();
  },

  newThread(tid, pid) {
    return new Thread<ObsdTypes>(tid, pid);
  },

  open(_kernel, fd) {
    return new ObsdDescriptor(fd);
  },

  close(kernel, kd) {
    // kcovclose
    if (kd.kstate === 'TRACE' && kd.kr === null) {
      if (kd.owner !== null && kd.owner.kcov === kd) {
        // "Another thread is currently using the kcov descriptor, postpone freeing to kcov_exit()."
        kd.kstate = 'DYING';
        kd.kmode = KCOV_MODE_NONE;
        return;
      }
      // No thread holds it (its binding was cleared by a KIODISABLE of another
      // descriptor, or its remote was unregistered): the kernel would leak it;
      // nothing can ever reach it, so it is freed.
    }
    kdFree(kernel, kd, `close of fd ${kd.fd}`);
  },

  exit(kernel, t) {
    // A thread cannot exit inside a section: leave it first (kcov_remote_leave).
    if (t.section !== null && t.section.context === 'task') openbsd.leaveSection!(kernel, { context: 'task', thread: t });
    // kcov_exit
    const kd = t.kcov;
    if (kd === null) return;
    if (kd.kstate === 'DYING') {
      t.kcov = null;
      kdFree(kernel, kd, `exit of thread ${t.tid}`);
      return;
    }
    // A bound descriptor never has a remote (KIOREMOTEATTACH needs READY), so
    // kr_barrier cannot block here.
    kd.kstate = 'READY';
    kd.kmode = KCOV_MODE_NONE;
    if (kd.owner === t) kd.owner = null;
    t.kcov = null;
  },

  fork() {
    // The child's struct proc starts zeroed: p_kd is NULL.
  },

  target(_kernel, t) {
    // kd_curproc: traced while p_kd's kd_mode is set (DYING and READY clear it).
    const kd = t.kcov;
    if (kd === null || kd.kmode === KCOV_MODE_NONE) return null;
    return kd.target;
  },

  mapped(_kernel, kd): Mapping | null {
    if (kd.area === null) return null;
    // kcovmmap: `offset >= kd_nmemb * 8` is not mappable, so mapping all
    // nmemb entries fails when the last page starts at or past that word.
    const bytes = (kd.nmemb + 1) * WORD;
    const lastPage = Math.floor((bytes - 1) / PAGE_SIZE) * PAGE_SIZE;
    if (lastPage >= kd.nmemb * WORD) {
      fail('EINVAL', `mmap of fd ${kd.fd}: page at offset ${lastPage} is at or past kd_nmemb * 8 = ${kd.nmemb * WORD} (kcovmmap)`);
    }
    return { area: kd.area, trace: kd.area, mode: kd.mode ?? kd.lastMode, bitmapWords: 0 };
  },

  destroy(kernel) {
    // Sections end with the kernel; no barrier may wait on them.
    for (const t of kernel.threads.values()) {
      if (t.section !== null) {
        t.section = null;
        t.kcov = null;
      }
    }
    for (const c of kernel.cpus) c.section = null;
    for (const kr of kernel.state.remotes.values()) kr.nsections = 0;
  },

  remoteKey(_kernel, spec: RemoteSpec) {
    let sub: unknown, id: unknown;
    if (typeof spec === 'string') {
      const m = /^([^:]+):([^:]+)$/.exec(spec);
      if (m === null) fail('EINVAL', `remote "${spec}" is not subsystem:id`);
      sub = m[1];
      id = m[2];
    } else {
      if (spec.handle !== undefined) fail('EINVAL', 'OpenBSD remotes are {subsystem, id}, not a handle');
      sub = spec.subsystem;
      id = spec.id;
    }
    return remoteKeyOf(parseRemotePart(sub, 'subsystem', INT_MAX), parseRemotePart(id, 'id', Number.MAX_SAFE_INTEGER));
  },

  registerRemote(kernel, key) {
    // kcov_remote_register: nothing happens when the remote exists.
    const [sub, id] = key.split(':').map(Number) as [number, number];
    return registerLocked(kernel, sub, id) !== null;
  },

  unregisterRemote(kernel, key) {
    // kcov_remote_unregister. The kernel ignores an unknown remote; the API
    // reports it so that a mistyped key does not pass unnoticed.
    const kr = kernel.state.remotes.get(key);
    if (kr === undefined) fail('ENOENT', `no remote ${key}`);
    krFree(kernel, kr, `unregister of remote ${key}`);
  },

  enterSection(kernel, site, key) {
    // kcov_remote_enter
    const kr = kernel.state.remotes.get(key);
    if (kr === undefined || kr.state !== 'READY') return;
    const kd = kr.kd;
    if (kd === null || kd.kstate !== 'TRACE') return;
    let section: Section;
    if (site.context === 'task') {
      const p = site.thread;
      // KASSERT(p->p_kd == NULL): a thread tracing itself cannot run a section.
      if (p.kcov !== null || p.section !== null) {
        fail('EBUSY', `thread ${p.tid} has a kcov descriptor (fd ${p.kcov?.fd}) in p_kd; kcov_remote_enter asserts it has none`);
      }
      section = { remote: key, context: 'task', target: kd.target };
      p.kcov = kd;
      p.section = section;
    } else {
      const cpu = site.cpu;
      // kd_intr == 1: no nesting of interrupt sections on a CPU.
      if (cpu.section !== null) return;
      const words = kernel.cpuAreaWords ?? KCOV_BUF_MAX_NMEMB;
      const area = kernel.cpuArea(cpu, words);
      // "Reset coverage buffer."
      area.count = 0;
      section = { remote: key, context: 'interrupt', target: { area, mode: kd.lastMode } };
      cpu.section = section;
    }
    kr.nsections++;
  },

  leaveSection(kernel, site) {
    // kcov_remote_leave
    if (site.context === 'task') {
      const p = site.thread;
      const s = p.section;
      if (p.kcov === null || s === null) {
        p.section = null;
        return undefined;
      }
      const kr = kernel.state.remotes.get(s.remote);
      p.section = null;
      if (kr === undefined) return undefined;
      // KASSERT(p->p_kd == kr->kr_kd)
      p.kcov = null;
      kr.nsections--;
      return undefined;
    }
    const cpu = site.cpu;
    const s = cpu.section;
    if (s === null) return undefined;
    cpu.section = null;
    const kr = kernel.state.remotes.get(s.remote);
    if (kr === undefined) return undefined;
    // "Stop writing to the coverage buffer associated with this CPU before copying its contents."
    const lost = kr.kd === null ? 0 : kdCopy(kr.kd, s.target!.area, s.target!.mode);
    kr.nsections--;
    return { lost };
  },

  remotesView(kernel) {
    return [...kernel.state.remotes.values()].map((kr) => {
      const threads: number[] = [];
      for (const t of kernel.threads.values()) if (t.section?.remote === kr.key) threads.push(t.tid);
      const cpus: number[] = [];
      for (const c of kernel.cpus) if (c.section?.remote === kr.key) cpus.push(c.id);
      return {
        remote: kr.key,
        subsystem: kr.subsystem,
        id: kr.id,
        state: kr.state,
        fd: kr.kd === null ? null : kr.kd.fd,
        mode: kr.kd === null ? null : kr.kd.mode,
        sections: kr.nsections,
        threads,
        cpus,
      };
    });
  },
};
