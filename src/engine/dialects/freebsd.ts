/**
 * FreeBSD sys/kern/kern_kcov.c. Names follow the driver: a descriptor's
 * `kstate` is info->state, `kmode` is info->mode (-1 when not running), the
 * owner is info->thread; a thread's `kcov` is td->td_kcov_info.
 *
 * Invariants, each enforced where it is stated:
 *  - info->thread and td->td_kcov_info point at each other or are both NULL
 *    (KIOENABLE sets both, KIODISABLE and kcov_thread_dtor clear both);
 *  - only a RUNNING info records (get_kinfo); DYING stops recording at once;
 *  - the buffer is freed exactly once: by the cdevpriv destructor
 *    (kcov_mmap_cleanup) when no thread holds the info, else by
 *    kcov_thread_dtor when the holding thread goes away.
 *
 * FreeBSD has no remote coverage (kcov(4) BUGS), so the remote hooks are
 * absent and the remote routes answer EOPNOTSUPP. Tracing in interrupt context
 * is skipped by get_kinfo; over HTTP every event comes from a thread, so that
 * rule has nothing to act on.
 */
import type { TraceMode } from '../area.js';
import type { Command, Dialect, Mapping } from '../dialect.js';
import { fail } from '../errno.js';
import type { Kernel } from '../kernel.js';
import { Descriptor, NoRemotes, Thread, type Section } from '../model.js';
import { int32Arg, intModeArg } from '../args.js';
import { DIALECT_WIRE, ioctl } from '../../wire/ioctls.js';

/** enum { KCOV_STATE_INVALID, _OPEN, _READY, _RUNNING, _DYING } */
export type FreeBSDState = 'OPEN' | 'READY' | 'RUNNING' | 'DYING';

/** sys/kcov.h KCOV_MAXENTRIES: the default of sysctl kern.kcov.max_entries. */
export const KCOV_MAXENTRIES = 1 << 24;
export const KCOV_MODE_TRACE_PC: number = DIALECT_WIRE.freebsd.modes.pc;
export const KCOV_MODE_TRACE_CMP: number = DIALECT_WIRE.freebsd.modes.cmp;
/** PAGE_SIZE on amd64/arm64 with 4 KiB pages; kcov_alloc rounds the buffer up to it. */
export const FREEBSD_PAGE_SIZE = 4096;

const FREEBSD_MODES = DIALECT_WIRE.freebsd.modes;

/** FreeBSD's types: its kcov_info as the descriptor; threads and state need nothing of their own. */
export interface FreeBSDTypes {
  readonly descriptor: FreeBSDDescriptor;
  readonly thread: Thread<FreeBSDTypes>;
  readonly section: Section;
  readonly state: NoRemotes;
}

type FreeBSDKernel = Kernel<FreeBSDTypes>;

export class FreeBSDDescriptor extends Descriptor<FreeBSDTypes> {
  /** [D] info->state; kcov_open starts in OPEN. */
  kstate: FreeBSDState = 'OPEN';
  /** [D] info->mode: KCOV_MODE_TRACE_PC/CMP while RUNNING, -1 otherwise. */
  kmode = -1;

  get state(): string {
    return this.kstate;
  }

  get mode(): TraceMode | null {
    if (this.kstate !== 'RUNNING') return null;
    return this.kmode === KCOV_MODE_TRACE_CMP ? 'cmp' : 'pc';
  }

  /** kcov_alloc: roundup2(entries * KCOV_ELEMENT_SIZE, PAGE_SIZE). */
  get bufsize(): number {
    if (this.area === null) return 0;
    const bytes = this.area.words * 8;
    return Math.ceil(bytes / FREEBSD_PAGE_SIZE) * FREEBSD_PAGE_SIZE;
  }

  override extra(): Record<string, unknown> {
    return {
      bufsize: this.area === null ? null : this.bufsize,
      // kern_mmap rounds the length to pages before kcov_mmap_single compares
      // size / KCOV_ELEMENT_SIZE with entries: only whole pages can be mapped.
      mmappable: this.area !== null && (this.area.words * 8) % FREEBSD_PAGE_SIZE === 0,
    };
  }
}

/** The sysctl kern.kcov.max_entries of this kernel. */
function maxEntries(limit: number | undefined): number {
  return limit ?? KCOV_MAXENTRIES;
}

/** kcov_free */
function kcovFree(kernel: FreeBSDKernel, d: FreeBSDDescriptor): void {
  kernel.freeArea(d.area);
  d.area = null;
}

export const FREEBSD_COMMANDS: Command<FreeBSDTypes>[] = [
  {
    ...ioctl('freebsd', 'KIOSETBUFSIZE'),
    run(ctx) {
      const d = ctx.d;
      // kcov_ioctl: the state check comes before kcov_alloc looks at the size.
      if (d.kstate !== 'OPEN') fail('EBUSY', `KIOSETBUFSIZE: state is ${d.kstate}, not OPEN (the buffer is set once)`);
      const entries = int32Arg(ctx.arg, 'KIOSETBUFSIZE entries');
      const max = maxEntries(ctx.kernel.maxEntries);
      // kcov_alloc: `entries < 2 || entries > kcov_max_entries` is EINVAL.
      if (entries < 2 || entries > max) {
        fail('EINVAL', `KIOSETBUFSIZE: ${entries} entries is outside 2..${max} (kern.kcov.max_entries)`);
      }
      // kva_alloc failing is ENOMEM; the area holds exactly `entries` words.
      d.area = ctx.kernel.allocArea(entries, `KIOSETBUFSIZE(${entries})`);
      d.kstate = 'READY';
      return 0;
    },
  },
  {
    ...ioctl('freebsd', 'KIOENABLE'),
    run(ctx) {
      const d = ctx.d;
      const td = ctx.thread;
      // kcov_ioctl KIOENABLE, in the driver's order: state, thread, mode.
      if (d.kstate !== 'READY') {
        fail('EBUSY', `KIOENABLE: state is ${d.kstate}, not READY (${d.kstate === 'OPEN' ? 'KIOSETBUFSIZE first' : 'already enabled'})`);
      }
      if (td.kcov !== null) fail('EINVAL', `KIOENABLE: thread ${td.tid} already traces fd ${td.kcov.fd} (td_kcov_info != NULL)`);
      const mode = intModeArg(ctx.arg, FREEBSD_MODES, 'KIOENABLE mode');
      if (mode !== KCOV_MODE_TRACE_PC && mode !== KCOV_MODE_TRACE_CMP) {
        fail('EINVAL', `KIOENABLE: mode ${mode} is neither KCOV_MODE_TRACE_PC (0) nor KCOV_MODE_TRACE_CMP (1)`);
      }
      d.owner = td;
      d.kmode = mode;
      d.kstate = 'RUNNING';
      d.lastMode = mode === KCOV_MODE_TRACE_CMP ? 'cmp' : 'pc';
      td.kcov = d;
      td.trace = { area: d.area!, mode: d.lastMode };
      return 0;
    },
  },
  {
    ...ioctl('freebsd', 'KIODISABLE'),
    run(ctx) {
      const d = ctx.d;
      const td = ctx.thread;
      // "Only the currently enabled thread may disable itself"
      if (d.kstate !== 'RUNNING' || td.kcov !== d) {
        fail('EINVAL', d.kstate !== 'RUNNING'
          ? `KIODISABLE: state is ${d.kstate}, not RUNNING`
          : `KIODISABLE: thread ${td.tid} is not the thread fd ${d.fd} traces`);
      }
      td.kcov = null;
      td.trace = null;
      d.kstate = 'READY';
      d.kmode = -1;
      d.owner = null;
      return 0;
    },
  },
];

export const freebsd: Dialect<FreeBSDTypes> = {
  name: 'freebsd',
  commands: FREEBSD_COMMANDS,
  unknownCommand: DIALECT_WIRE.freebsd.unknownIoctl,
  // kcov_mmap_single: `info->kvaddr == 0` is EINVAL.
  mmapErrno: 'EINVAL',
  limits: (limit) => ({ minEntries: 2, maxEntries: maxEntries(limit) }),

  createState() {
    return new NoRemotes();
  },

  newThread(tid, pid) {
    return new Thread<FreeBSDTypes>(tid, pid);
  },

  open(_kernel, fd) {
    return new FreeBSDDescriptor(fd);
  },

  close(kernel, d) {
    // kcov_close would answer EBUSY for a RUNNING info, but close(2) releases
    // the fd regardless; the cdevpriv destructor kcov_mmap_cleanup does the work.
    d.kstate = 'DYING';
    if (d.owner !== null) return; // freed by kcov_thread_dtor
    kcovFree(kernel, d);
  },

  exit(kernel, t) {
    // kcov_thread_dtor
    const d = t.kcov;
    if (d === null) return;
    t.kcov = null;
    t.trace = null;
    d.owner = null;
    d.kmode = -1;
    if (d.kstate !== 'DYING') {
      // "The kcov file is still open. Mark it as unused"
      d.kstate = 'READY';
      return;
    }
    kcovFree(kernel, d);
  },

  fork() {
    // td_kcov_info is not inherited: a new thread starts untraced.
  },

  target(_kernel, t) {
    // get_kinfo: only a RUNNING info records.
    const d = t.kcov;
    return d !== null && d.kstate === 'RUNNING' ? t.trace : null;
  },

  mapped(_kernel, d): Mapping | null {
    if (d.area === null) return null;
    return { area: d.area, trace: d.area, mode: d.mode ?? d.lastMode, bitmapWords: 0 };
  },
};
