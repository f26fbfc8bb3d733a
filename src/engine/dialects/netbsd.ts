/**
 * NetBSD sys/kern/subr_kcov.c (v1.18). Names follow the kernel: a kcov_t is a
 * Kd (an open file's NetbsdDescriptor, or the kd inside a kcov_remote_t),
 * `lkcov` of a thread is curlwp->l_kcov, `kmode` is kd->mode.
 *
 * Invariants, each enforced where it is stated:
 *  - a kd is in at most one LWP's l_kcov (setLkcov); for a local kd that LWP
 *    is d.owner, for a remote kd it is the thread of the open section;
 *  - a remote is entered by at most one LWP at a time (kr->refcount, the
 *    KASSERT(refs == 1) of kcov_remote_enter, here EBUSY);
 *  - every fd attached to a remote shares the remote's one buffer: enable,
 *    disable and the coverage route act on it (kcov_fops_mmap maps kd->remote).
 *
 * Where the kernel panics or KASSERTs (a section on an unknown remote, nested
 * sections, leave without enter), the emulator refuses with an errno and
 * changes nothing; those choices are marked "not in the kernel".
 */
import type { Area, TraceMode } from '../area.js';
import { modeArg, objectArg, ulongArg } from '../args.js';
import type { Command, Dialect, Mapping, RemoteSpec } from '../dialect.js';
import { fail } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { Descriptor, Thread, type DialectState, type Section, type ThreadExtra, type TraceTarget } from '../model.js';
import { parseU64 } from '../../wire/u64.js';
import { DIALECT_WIRE, ioctl } from '../../wire/ioctls.js';

/** KCOV_BUF_MAX_ENTRIES (256 << 10); a kernel's max_entries replaces it (lower or higher). */
export const NETBSD_MAX_ENTRIES = 256 << 10;
/** PAGE_SIZE of the buffer rounding (bufsize); amd64/aarch64. */
export const NETBSD_PAGE_SIZE = 4096;
export const KCOV_MODE_NONE: number = DIALECT_WIRE.netbsd.modes.none;
export const KCOV_MODE_TRACE_PC: number = DIALECT_WIRE.netbsd.modes.pc;
export const KCOV_MODE_TRACE_CMP: number = DIALECT_WIRE.netbsd.modes.cmp;

const NETBSD_MODES = DIALECT_WIRE.netbsd.modes;
const MODE_NAMES = ['none', 'pc', 'cmp'] as const;

/** NetBSD's types: a kcov_t per open file, an LWP with l_kcov, the remotes as the kernel's state. */
export interface NetbsdTypes {
  readonly descriptor: NetbsdDescriptor;
  readonly thread: NetbsdThread;
  readonly section: Section;
  readonly state: NetbsdState;
}

type NetbsdKernel = Kernel<NetbsdTypes>;

/** An LWP. */
export class NetbsdThread extends Thread<NetbsdTypes> {
  /** [D] curlwp->l_kcov: a local kd, or a remote's while inside a section. */
  lkcov: Kd | null = null;
  /** [D] kcov_silence_enter is in force (the l_kcov's kd->silenced as this LWP saw it). */
  silenced = false;

  override extra(): ThreadExtra {
    return { handle: null, silenced: this.silenced, mode: this.kcov === null ? 'DISABLED' : 'TRACE' };
  }
}

/** The remotes of one kernel (kcov_remote_register's list). */
export class NetbsdState implements DialectState {
  /** [D] by "subsystem:id" in decimal. */
  readonly remotes = new Map<string, NetbsdRemote>();

  *areas(): Iterable<Area> {
    for (const r of this.remotes.values()) if (r.area !== null) yield r.area;
  }
}

/** The fields every kcov_t has, local or remote ("Can be remote"). */
interface Kd {
  /** kd->buf (null until kcov_allocbuf) */
  area: Area | null;
  /** kd->bufsize: bytes, rounded up to a page */
  bufsize: number;
  /** kd->mode: KCOV_MODE_NONE/TRACE_PC/TRACE_CMP, as set by the last enable */
  kmode: number;
  /** kd->enabled */
  enabled: boolean;
  /** kd->silenced: kcov_silence_enter of the LWP holding this kd */
  silenced: boolean;
  /** Mode of the records in the buffer (the last PC/CMP enable), for reading it. */
  lastMode: TraceMode;
}

/** kcov_remote_t: (subsystem, id), kr->refcount and its own kd. */
export class NetbsdRemote implements Kd {
  area: Area | null = null;
  bufsize = 0;
  kmode = KCOV_MODE_NONE;
  enabled = false;
  silenced = false;
  lastMode: TraceMode = 'pc';
  /** [D] kr->refcount: 1 while a section is open on `holder`. */
  refcount = 0;
  /** [D] the LWP inside kcov_remote_enter .. kcov_remote_leave. */
  holder: NetbsdThread | null = null;

  constructor(readonly key: string) {}
}

export class NetbsdDescriptor extends Descriptor<NetbsdTypes> implements Kd {
  bufsize = 0;
  kmode = KCOV_MODE_NONE;
  /** [D] kd->enabled */
  enabled = false;
  /** [D] kd->silenced */
  silenced = false;
  /** [D] kd->lwpfree: closed while enabled, freed by kcov_lwp_free of the owner */
  lwpfree = false;
  /** [D] kd->remote */
  remote: NetbsdRemote | null = null;
  /** [D] kcov_free ran: the kd is gone. */
  freed = false;

  /**
   * NetBSD has no state enum; this name is derived from the kcov_t fields
   * (documented in the DescriptorView schema).
   */
  get state(): string {
    if (this.freed) return 'FREED';
    if (this.remote !== null) return this.remote.enabled ? 'REMOTE_ENABLED' : 'REMOTE';
    if (this.enabled) return this.lwpfree ? 'LWPFREE' : 'ENABLED';
    return this.area === null ? 'NOBUF' : 'READY';
  }

  get mode(): TraceMode | null {
    if (!this.enabled) return null;
    return this.kmode === KCOV_MODE_TRACE_PC ? 'pc' : this.kmode === KCOV_MODE_TRACE_CMP ? 'cmp' : null;
  }

  override extra(): Record<string, unknown> {
    const r = this.remote;
    return {
      enabled: this.enabled,
      kd_mode: MODE_NAMES[this.kmode] ?? null,
      silenced: this.silenced,
      lwpfree: this.lwpfree,
      bufsize: this.bufsize,
      remote: r === null ? null : {
        remote: r.key,
        enabled: r.enabled,
        kd_mode: MODE_NAMES[r.kmode] ?? null,
        words: r.area === null ? null : r.area.words,
        count: r.area === null ? null : r.area.count,
      },
    };
  }
}

// ---- curlwp->l_kcov ---------------------------------------------------------------

/** l->l_kcov = kd, keeping the thread's view (fd, silenced) and d.owner in step. */
function setLkcov(t: NetbsdThread, kd: Kd | null): void {
  const old = t.lkcov;
  if (old instanceof NetbsdDescriptor && old.owner === t) old.owner = null;
  t.lkcov = kd;
  t.kcov = kd instanceof NetbsdDescriptor ? kd : null;
  if (kd instanceof NetbsdDescriptor) kd.owner = t;
  t.silenced = kd !== null && kd.silenced;
}

/**
 * Where __sanitizer_cov_trace_pc / trace_cmp write for an LWP holding `kd`:
 * nothing unless enabled, not silenced, and in a tracing mode; the other
 * kind's records are ignored by the mode check.
 */
function kdTarget(kd: Kd | null): TraceTarget | null {
  if (kd === null || !kd.enabled || kd.silenced || kd.area === null) return null;
  if (kd.kmode === KCOV_MODE_TRACE_PC) return { area: kd.area, mode: 'pc' };
  if (kd.kmode === KCOV_MODE_TRACE_CMP) return { area: kd.area, mode: 'cmp' };
  return null; // KCOV_MODE_NONE: enabled, records nothing
}

// ---- kcov_t lifetime ----------------------------------------------------------------

/** kcov_allocbuf: EINVAL outside 2..max, EEXIST when the buffer exists. */
function allocbuf(kernel: NetbsdKernel, kd: Kd, nent: number, what: string): void {
  const max = maxEntries(kernel.maxEntries);
  if (nent < 2 || nent > max) fail('EINVAL', `${what}: ${nent} entries is outside 2..${max} (KCOV_BUF_MAX_ENTRIES)`);
  if (kd.area !== null) fail('EEXIST', `${what}: the buffer is already allocated`);
  // The buffer holds nent entries (bufnent = nent - 1 records after buf[0]);
  // bufsize is the page-rounded size kcov_fops_mmap checks.
  kd.area = kernel.allocArea(nent, `${what}(${nent})`);
  kd.bufsize = Math.ceil((nent * 8) / NETBSD_PAGE_SIZE) * NETBSD_PAGE_SIZE;
}

/** kcov_free */
function kcovFree(kernel: NetbsdKernel, d: NetbsdDescriptor): void {
  kernel.freeArea(d.area);
  d.area = null;
  d.remote = null;
  d.freed = true;
}

function maxEntries(limit: number | undefined): number {
  return limit ?? NETBSD_MAX_ENTRIES;
}

/** kcov_remote_enable */
function remoteEnable(r: NetbsdRemote, mode: number): void {
  if (r.enabled) fail('EBUSY', `KCOV_IOC_ENABLE: remote ${r.key} is already enabled`);
  r.kmode = mode;
  if (mode !== KCOV_MODE_NONE) r.lastMode = mode === KCOV_MODE_TRACE_CMP ? 'cmp' : 'pc';
  r.enabled = true;
}

/** kcov_remote_disable */
function remoteDisable(r: NetbsdRemote, what: string): void {
  if (!r.enabled) fail('ENOENT', `${what}: remote ${r.key} is not enabled`);
  r.enabled = false;
}

// ---- remote keys ----------------------------------------------------------------------

const halves = new Uint32Array(2);

/** One u64 of a remote key, in canonical decimal (BigInt is fine here: cold path). */
function keyPart(v: unknown, what: string): string {
  if (!parseU64(v, halves, 0)) fail('EINVAL', `${what}: ${JSON.stringify(v)} is not a 64-bit unsigned value`);
  return ((BigInt(halves[1]!) << 32n) | BigInt(halves[0]!)).toString();
}

/** "subsystem:id" (each hex or decimal) or {subsystem, id} as "<dec>:<dec>". */
export function netbsdRemoteKey(spec: RemoteSpec): string {
  if (typeof spec === 'string') {
    const parts = spec.split(':');
    if (parts.length !== 2) fail('EINVAL', `remote "${spec}" is not subsystem:id`);
    return `${keyPart(parts[0], 'subsystem')}:${keyPart(parts[1], 'id')}`;
  }
  if (spec.handle !== undefined) fail('EINVAL', 'NetBSD remotes are {subsystem, id}, not a Linux handle');
  if (spec.subsystem === undefined || spec.id === undefined) fail('EINVAL', 'a NetBSD remote needs subsystem and id');
  return `${keyPart(spec.subsystem, 'subsystem')}:${keyPart(spec.id, 'id')}`;
}

// ---- ioctls ---------------------------------------------------------------------------

export const NETBSD_COMMANDS: Command<NetbsdTypes>[] = [
  {
    ...ioctl('netbsd', 'KCOV_IOC_SETBUFSIZE'),
    run(ctx) {
      const d = ctx.d;
      const nent = ulongArg(ctx.arg, 'KCOV_IOC_SETBUFSIZE entries');
      // kcov_setbufsize
      if (d.remote !== null) return 0; /* buffer allocated remotely */
      if (d.enabled) fail('EBUSY', 'KCOV_IOC_SETBUFSIZE: the descriptor is enabled');
      allocbuf(ctx.kernel, d, nent, 'KCOV_IOC_SETBUFSIZE');
      return 0;
    },
  },
  {
    ...ioctl('netbsd', 'KCOV_IOC_ENABLE'),
    run(ctx) {
      const d = ctx.d;
      const mode = modeArg(ctx.arg, NETBSD_MODES, 'KCOV_IOC_ENABLE mode');
      // kcov_enable, in the kernel's order
      if (mode !== KCOV_MODE_NONE && mode !== KCOV_MODE_TRACE_PC && mode !== KCOV_MODE_TRACE_CMP) {
        fail('EINVAL', `KCOV_IOC_ENABLE: mode ${String(ctx.arg)} is not KCOV_MODE_NONE (0), TRACE_PC (1) or TRACE_CMP (2)`);
      }
      if (d.remote !== null) {
        remoteEnable(d.remote, mode);
        return 0;
      }
      if (d.enabled) fail('EBUSY', `KCOV_IOC_ENABLE: fd ${d.fd} is already enabled`);
      const t = ctx.thread;
      if (t.lkcov !== null) {
        fail('EBUSY', t.kcov !== null
          ? `KCOV_IOC_ENABLE: LWP ${t.tid} already has a kcov (fd ${t.kcov.fd})`
          : `KCOV_IOC_ENABLE: LWP ${t.tid} is inside a remote section (l_kcov is the remote's)`);
      }
      if (d.area === null) fail('ENOBUFS', 'KCOV_IOC_ENABLE: no buffer (KCOV_IOC_SETBUFSIZE first)');
      setLkcov(t, d);
      d.kmode = mode;
      if (mode !== KCOV_MODE_NONE) d.lastMode = mode === KCOV_MODE_TRACE_CMP ? 'cmp' : 'pc';
      d.enabled = true;
      return 0;
    },
  },
  {
    ...ioctl('netbsd', 'KCOV_IOC_DISABLE'),
    run(ctx) {
      const d = ctx.d;
      // kcov_disable
      if (d.remote !== null) {
        remoteDisable(d.remote, 'KCOV_IOC_DISABLE');
        return 0;
      }
      if (!d.enabled) fail('ENOENT', `KCOV_IOC_DISABLE: fd ${d.fd} is not enabled`);
      if (ctx.thread.lkcov !== d) fail('ENOENT', `KCOV_IOC_DISABLE: LWP ${ctx.thread.tid} is not the one that enabled fd ${d.fd}`);
      setLkcov(ctx.thread, null);
      d.enabled = false;
      return 0;
    },
  },
  {
    ...ioctl('netbsd', 'KCOV_IOC_REMOTE_ATTACH'),
    run(ctx) {
      const d = ctx.d;
      const a = objectArg(ctx.arg, 'KCOV_IOC_REMOTE_ATTACH');
      const key = netbsdRemoteKey({ subsystem: a.subsystem, id: a.id });
      // kcov_remote_attach: a second attach replaces the first without a check.
      if (d.enabled) fail('EEXIST', `KCOV_IOC_REMOTE_ATTACH: fd ${d.fd} is enabled`);
      const r = ctx.kernel.state.remotes.get(key);
      if (r === undefined) fail('ENOENT', `KCOV_IOC_REMOTE_ATTACH: no remote ${key} registered (kcov_remote_find)`);
      d.remote = r;
      return 0;
    },
  },
  {
    ...ioctl('netbsd', 'KCOV_IOC_REMOTE_DETACH'),
    run(ctx) {
      const d = ctx.d;
      // kcov_remote_detach: detaching disables the remote for every fd attached to it.
      if (d.enabled) fail('EEXIST', `KCOV_IOC_REMOTE_DETACH: fd ${d.fd} is enabled`);
      if (d.remote === null) fail('ENOENT', `KCOV_IOC_REMOTE_DETACH: fd ${d.fd} has no remote attached`);
      d.remote.enabled = false;
      d.remote = null;
      return 0;
    },
  },
];

export const netbsd: Dialect<NetbsdTypes> = {
  name: 'netbsd',
  commands: NETBSD_COMMANDS,
  unknownCommand: DIALECT_WIRE.netbsd.unknownIoctl,
  // kcov_fops_mmap: size + off > bufsize, and bufsize is 0 before the buffer exists.
  mmapErrno: 'ENOMEM',
  limits: (limit) => ({ minEntries: 2, maxEntries: maxEntries(limit) }),

  createState() {
    return new NetbsdState();
  },

  newThread(tid, pid) {
    return new NetbsdThread(tid, pid);
  },

  open(_kernel, fd) {
    return new NetbsdDescriptor(fd);
  },

  close(kernel, nd) {
    // kcov_fops_close
    if (nd.remote !== null) nd.remote.enabled = false;
    if (nd.enabled) {
      nd.lwpfree = true; // the owner LWP frees it in kcov_lwp_free
      return;
    }
    kcovFree(kernel, nd);
  },

  exit(kernel, t) {
    // kcov_lwp_free: whatever l_kcov holds is disabled, a remote's kd included.
    const k = t.lkcov;
    if (k === null) return;
    k.enabled = false;
    if (k instanceof NetbsdRemote && k.holder === t) {
      // Not in the kernel: an LWP exiting inside a section leaves refcount at 1
      // and the next kcov_remote_enter KASSERTs; the emulator closes the section.
      k.refcount = 0;
      k.holder = null;
      t.section = null;
    }
    setLkcov(t, null);
    if (k instanceof NetbsdDescriptor && k.lwpfree) kcovFree(kernel, k);
  },

  fork() {
    // lwp_create: a new LWP starts with l_kcov NULL.
  },

  target(_kernel, t) {
    return kdTarget(t.lkcov);
  },

  mapped(_kernel, nd): Mapping | null {
    // kcov_fops_mmap: an attached fd maps the remote's buffer.
    const buf: Kd = nd.remote ?? nd;
    if (buf.area === null) return null;
    const enabledMode = buf.enabled && buf.kmode === KCOV_MODE_TRACE_CMP ? 'cmp' : buf.enabled && buf.kmode === KCOV_MODE_TRACE_PC ? 'pc' : null;
    return { area: buf.area, trace: buf.area, mode: enabledMode ?? buf.lastMode, bitmapWords: 0 };
  },

  destroy(kernel) {
    for (const r of kernel.state.remotes.values()) {
      kernel.freeArea(r.area);
      r.area = null;
    }
  },

  remoteKey(_kernel, spec) {
    return netbsdRemoteKey(spec);
  },

  registerRemote(kernel, key) {
    // kcov_remote_register panics on a duplicate; the route answers 200 instead.
    if (kernel.state.remotes.has(key)) return false;
    const r = new NetbsdRemote(key);
    allocbuf(kernel, r, maxEntries(kernel.maxEntries), `kcov_remote_register ${key}`);
    kernel.state.remotes.set(key, r);
    return true;
  },

  unregisterRemote(kernel, key) {
    // Not in the kernel: NetBSD has no kcov_remote_unregister (vhci never goes
    // away). Refused while anything points at the remote, as kd->remote would dangle.
    const r = kernel.state.remotes.get(key);
    if (r === undefined) fail('ENOENT', `no remote ${key} registered`);
    if (r.refcount > 0) fail('EBUSY', `remote ${key} has a section open on LWP ${r.holder?.tid}`);
    for (const d of kernel.descriptors.values()) {
      if (d.remote === r) fail('EBUSY', `remote ${key} is attached to fd ${d.fd}`);
    }
    kernel.freeArea(r.area);
    r.area = null;
    kernel.state.remotes.delete(key);
  },

  enterSection(kernel, site, key) {
    if (site.context !== 'task') {
      fail('EOPNOTSUPP', `NetBSD kcov traces nothing in ${site.context} context (in_interrupt()); sections run in task context`);
    }
    const t = site.thread;
    // kcov_remote_enter
    const r = kernel.state.remotes.get(key);
    if (r === undefined) fail('ENOENT', `kcov_remote_enter: no remote ${key} registered (the kernel panics)`);
    if (r.refcount !== 0) fail('EBUSY', `kcov_remote_enter: remote ${key} is already entered by LWP ${r.holder?.tid} (KASSERT(refs == 1))`);
    if (t.section !== null) fail('EBUSY', `kcov_remote_enter: LWP ${t.tid} is already in a section on ${t.section.remote}`);
    if (t.lkcov !== null) fail('EBUSY', `kcov_remote_enter: LWP ${t.tid} has a kcov of its own (KASSERT(l->l_kcov == NULL))`);
    r.refcount = 1;
    r.holder = t;
    // Only a remote enabled at enter is taken; enabling it later does not reach this section.
    if (r.enabled) setLkcov(t, r);
    t.section = { remote: key, context: 'task', target: kdTarget(t.lkcov) };
  },

  leaveSection(kernel, site) {
    if (site.context !== 'task') fail('EOPNOTSUPP', `NetBSD kcov has no ${site.context} sections`);
    const t = site.thread;
    const s = t.section;
    if (s === null) fail('ENOENT', `kcov_remote_leave: LWP ${t.tid} is in no section (KASSERT(refs == 0))`);
    const r = kernel.state.remotes.get(s.remote);
    if (r !== undefined && r.holder === t) {
      r.refcount = 0;
      r.holder = null;
    }
    t.section = null;
    // kcov_remote_leave sets l_kcov = NULL whatever it held: a local kd the LWP
    // enabled inside a section whose remote was off stays enabled with no owner.
    setLkcov(t, null);
  },

  remotesView(kernel) {
    const out: unknown[] = [];
    for (const r of kernel.state.remotes.values()) {
      const [subsystem, id] = r.key.split(':');
      const attached: number[] = [];
      for (const d of kernel.descriptors.values()) if (d.remote === r) attached.push(d.fd);
      out.push({
        remote: r.key,
        subsystem,
        id,
        enabled: r.enabled,
        kd_mode: MODE_NAMES[r.kmode] ?? null,
        silenced: r.silenced,
        words: r.area === null ? null : r.area.words,
        count: r.area === null ? null : r.area.count,
        attached,
        section: r.holder === null ? null : r.holder.tid,
      });
    }
    return out;
  },

  silence(_kernel, t, on) {
    // kcov_silence_enter / _leave: a flag on curlwp->l_kcov, no nesting, a no-op without one.
    const k = t.lkcov;
    if (k === null) return;
    k.silenced = on;
    t.silenced = on;
  },
};
