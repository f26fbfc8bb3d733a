/**
 * Linux remote coverage: KCOV_REMOTE_ENABLE, kcov_remote_start/stop and
 * kcov_move_area of kernel/kcov.c (linux-next), on top of linux.ts.
 *
 * The remote registry is kernel.remotes, keyed by the canonical handle hex
 * (formatU64: lowercase, no zero padding). An entry is a LinuxRemote. A
 * section holds a reference on its descriptor (kcov_get in kcov_remote_start,
 * kcov_put in kcov_remote_stop) and the descriptor's sequence at start: a
 * KCOV_DISABLE or a re-enable in between bumps kcov->sequence, and the
 * section's records are then discarded at stop.
 *
 * Decisions where the kernel WARNs or fails silently (documented in the README):
 *  - a handle kcov_remote_start would WARN on (not COMMON/USB, bytes 4..6 set)
 *    is EINVAL at the API, as is a BSD {subsystem, id};
 *  - the section area is allocated from the MemoryBudget; where vmalloc would
 *    fail silently the API answers ENOMEM and nothing changes;
 *  - area_size 0: vmalloc(0) returns NULL, so a task section is a no-op;
 *  - a stop without an open section is a no-op (the kernel would tear down the
 *    task's own tracing in the unbalanced case);
 *  - a thread that exits inside a section first leaves it (an implicit
 *    kcov_remote_stop: records moved if still current), then runs
 *    kcov_task_exit. The kernel WARNs in kcov_task_exit and leaks the section;
 *  - context=interrupt (hardirq) is a no-op: kcov_remote_start returns early
 *    when `!in_task() && !in_softirq_really()`.
 */
import { Area, type TraceMode } from '../area.js';
import { objectArg } from '../args.js';
import type { Command, Dialect, RemoteSpec, SectionLeave, SectionSite } from '../dialect.js';
import { fail } from '../errno.js';
import type { Cpu, Kernel } from '../kernel.js';
import type { Section, Thread, TraceTarget } from '../model.js';
import { formatU64, parseU64 } from '../../wire/u64.js';
import {
  LINUX_COMMANDS, LINUX_MODES, checkEnable, getMode, kcovDisable, kcovPut, kcovStart, kcovStop, linux, setLinuxRemoteHooks, taskMode,
  type LinuxDescriptor, type LinuxTaskMode,
} from './linux.js';
import { ioctl } from '../../wire/ioctls.js';

/** KCOV_REMOTE_MAX_HANDLES */
export const KCOV_REMOTE_MAX_HANDLES = 0x100;
/** CONFIG_KCOV_IRQ_AREA_SIZE default: words of each per-CPU softirq area. */
export const KCOV_IRQ_AREA_SIZE = 0x40000;
/** KCOV_SUBSYSTEM_COMMON and KCOV_SUBSYSTEM_USB, as the top byte of a handle. */
export const KCOV_SUBSYSTEM_COMMON = 0x00;
export const KCOV_SUBSYSTEM_USB = 0x01;
/** LONG_MAX / sizeof(unsigned long) = 0x0fffffffffffffff, as its high half. */
const AREA_SIZE_MAX_HI = 0x0fffffff;

/** One registered handle: struct kcov_remote. */
export interface LinuxRemote {
  /** [I] canonical hex of the handle. */
  readonly handle: string;
  /** [I] the descriptor that registered it (remote->kcov). */
  readonly d: LinuxDescriptor;
  /** [I] registered as KCOV_REMOTE_ENABLE's common_handle, not from handles[]. */
  readonly common: boolean;
}

/** What a section needs at stop: the kernel keeps it in task_struct / kcov_percpu_data. */
interface SectionData {
  readonly d: LinuxDescriptor;
  readonly area: Area;
  /** t->kcov_sequence at start. */
  readonly sequence: number;
  /** softirq: the interrupted thread, and its state saved by kcov_remote_softirq_start. */
  readonly thread: Thread | null;
  readonly saved: SavedTask | null;
}

interface SavedTask {
  readonly kcov: Thread['kcov'];
  readonly trace: TraceTarget | null;
  readonly mode: LinuxTaskMode;
  readonly sequence: unknown;
}

/** kcov_remote_areas: free task-context section areas, by exact size (never freed, as in the kernel). */
const pools = new WeakMap<Kernel, Map<number, Area[]>>();

function pool(kernel: Kernel): Map<number, Area[]> {
  let p = pools.get(kernel);
  if (p === undefined) {
    p = new Map();
    pools.set(kernel, p);
  }
  return p;
}

/** kcov_remote_area_get, falling back to vmalloc (here: the budget, ENOMEM). */
function remoteAreaGet(kernel: Kernel, words: number): Area {
  const free = pool(kernel).get(words);
  if (free !== undefined && free.length > 0) return free.pop()!;
  return kernel.allocArea(words, `remote section area (${words} words)`);
}

/** kcov_remote_area_put */
function remoteAreaPut(kernel: Kernel, area: Area): void {
  const p = pool(kernel);
  const list = p.get(area.words);
  if (list === undefined) p.set(area.words, [area]);
  else list.push(area);
}

/** Words of free pooled areas (for the views). */
export function pooledWords(kernel: Kernel): number {
  let n = 0;
  for (const [words, list] of pool(kernel)) n += words * list.length;
  return n;
}

/**
 * kcov_check_handle(handle, common_valid, uncommon_valid, zero_valid) on halves:
 * bytes 4..6 must be zero; COMMON needs a non-zero instance (or zero_valid);
 * USB any instance; any other subsystem is invalid.
 */
export function kcovCheckHandle(lo: number, hi: number, commonValid: boolean, uncommonValid: boolean, zeroValid: boolean): boolean {
  if ((hi & 0x00ffffff) !== 0) return false;
  switch (hi >>> 24) {
    case KCOV_SUBSYSTEM_COMMON:
      return lo !== 0 ? commonValid : zeroValid;
    case KCOV_SUBSYSTEM_USB:
      return uncommonValid;
    default:
      return false;
  }
}

function remoteOf(kernel: Kernel, key: string): LinuxRemote | undefined {
  return kernel.remotes.get(key) as LinuxRemote | undefined;
}

/** kcov_remote_add: EEXIST when any descriptor already registered the handle. */
function remoteAdd(kernel: Kernel, d: LinuxDescriptor, key: string, common: boolean): void {
  const other = remoteOf(kernel, key);
  if (other !== undefined) {
    fail('EEXIST', `KCOV_REMOTE_ENABLE: handle ${key} is already registered by fd ${other.d.fd}`);
  }
  const r: LinuxRemote = { handle: key, d, common };
  kernel.remotes.set(key, r);
  if (common) d.commonHandle = key;
  else d.handles.push(key);
}

/** kcov_remote_reset: drop every handle `d` registered (kcov_reset itself stays in linux.ts). */
function remoteReset(kernel: Kernel, d: LinuxDescriptor): void {
  for (const [key, r] of kernel.remotes) {
    if ((r as LinuxRemote).d === d) kernel.remotes.delete(key);
  }
  d.handles = [];
  d.commonHandle = null;
}

/** kcov_mode_enabled */
function modeEnabled(m: LinuxTaskMode): boolean {
  return m !== 'DISABLED';
}

/** A u64 field of the argument, as halves; malformed values never reach the kernel (EINVAL). */
function u64Field(arg: Record<string, unknown>, field: string): [number, number] {
  const v = arg[field];
  if (v === undefined || v === null) return [0, 0];
  const out = new Uint32Array(2);
  if (!parseU64(v, out, 0)) fail('EINVAL', `KCOV_REMOTE_ENABLE: ${field} ${JSON.stringify(v)} is not a 64-bit unsigned value`);
  return [out[0]!, out[1]!];
}

const REMOTE_ARG_FIELDS = new Set(['trace_mode', 'area_size', 'num_handles', 'handles', 'common_handle']);

/** struct kcov_remote_arg, decoded whole before any check that changes state. */
interface RemoteArg {
  traceMode: unknown;
  areaSize: [number, number];
  handles: [number, number][];
  commonHandle: [number, number];
}

function decodeRemoteArg(raw: unknown): RemoteArg {
  const arg = objectArg(raw, 'KCOV_REMOTE_ENABLE');
  for (const k of Object.keys(arg)) {
    if (!REMOTE_ARG_FIELDS.has(k)) fail('EINVAL', `KCOV_REMOTE_ENABLE: unknown field "${k}" in struct kcov_remote_arg`);
  }
  const list = arg.handles ?? [];
  if (!Array.isArray(list)) fail('EINVAL', 'KCOV_REMOTE_ENABLE: handles must be an array');
  // kcov_ioctl reads num_handles first: more than KCOV_REMOTE_MAX_HANDLES is EINVAL.
  const num = arg.num_handles === undefined ? list.length : u64Field(arg, 'num_handles');
  const n = typeof num === 'number' ? num : num[1] !== 0 ? Infinity : num[0];
  if (n > KCOV_REMOTE_MAX_HANDLES) {
    fail('EINVAL', `KCOV_REMOTE_ENABLE: num_handles ${n} is above KCOV_REMOTE_MAX_HANDLES (${KCOV_REMOTE_MAX_HANDLES})`);
  }
  // ...and after memdup_user, a num_handles that does not match the copied array is EINVAL too.
  if (n !== list.length) fail('EINVAL', `KCOV_REMOTE_ENABLE: num_handles ${n} but ${list.length} handles`);
  const handles = list.map((h, i): [number, number] => {
    const out = new Uint32Array(2);
    if (!parseU64(h, out, 0)) fail('EINVAL', `KCOV_REMOTE_ENABLE: handles[${i}] ${JSON.stringify(h)} is not a 64-bit unsigned value`);
    return [out[0]!, out[1]!];
  });
  const tm = arg.trace_mode;
  if (tm !== undefined && tm !== null && !(typeof tm === 'string' && Object.hasOwn(LINUX_MODES, tm)) && !parseU64(tm)) {
    fail('EINVAL', `KCOV_REMOTE_ENABLE: trace_mode ${JSON.stringify(tm)} is not a number, "pc" or "cmp"`);
  }
  return { traceMode: tm, areaSize: u64Field(arg, 'area_size'), handles, commonHandle: u64Field(arg, 'common_handle') };
}

export const KCOV_REMOTE_ENABLE: Command = {
  ...ioctl('linux', 'KCOV_REMOTE_ENABLE'),
  run(ctx) {
    const { kernel } = ctx;
    const d = ctx.d as LinuxDescriptor;
    const t = ctx.thread;
    const arg = decodeRemoteArg(ctx.arg);
    // kcov_ioctl_locked, case KCOV_REMOTE_ENABLE, in order.
    checkEnable(d, t, 'KCOV_REMOTE_ENABLE');
    const mode = getMode(arg.traceMode, kernel);
    const [sizeLo, sizeHi] = arg.areaSize;
    if (sizeHi > AREA_SIZE_MAX_HI) {
      fail('EINVAL', `KCOV_REMOTE_ENABLE: area_size ${formatU64(sizeLo, sizeHi)} is above LONG_MAX / sizeof(unsigned long)`);
    }
    d.kmode = mode;
    d.bitmapWords = 0;
    d.lastMode = mode === 'TRACE_CMP' ? 'cmp' : 'pc';
    // t->kcov = kcov; t->kcov_mode = KCOV_MODE_REMOTE: the task's own code is no longer traced.
    kcovStart(t, d, null, 'REMOTE');
    d.owner = t;
    d.remote = true;
    // Words above 2^53 cannot be allocated anyway; they saturate and fail with ENOMEM at a section.
    d.remoteSize = Math.min(sizeHi * 0x1_0000_0000 + sizeLo, Number.MAX_SAFE_INTEGER);
    for (let i = 0; i < arg.handles.length; i++) {
      const [lo, hi] = arg.handles[i]!;
      const key = formatU64(lo, hi);
      if (!kcovCheckHandle(lo, hi, false, true, false)) {
        kcovDisable(kernel, t, d);
        fail('EINVAL', `KCOV_REMOTE_ENABLE: handles[${i}] ${key} is not a USB-subsystem handle (kcov_check_handle)`);
      }
      try {
        remoteAdd(kernel, d, key, false);
      } catch (e) {
        kcovDisable(kernel, t, d);
        throw e;
      }
    }
    const [clo, chi] = arg.commonHandle;
    if (clo !== 0 || chi !== 0) {
      const key = formatU64(clo, chi);
      if (!kcovCheckHandle(clo, chi, true, false, false)) {
        kcovDisable(kernel, t, d);
        fail('EINVAL', `KCOV_REMOTE_ENABLE: common_handle ${key} is not KCOV_SUBSYSTEM_COMMON with a non-zero instance (kcov_check_handle)`);
      }
      try {
        remoteAdd(kernel, d, key, true);
      } catch (e) {
        kcovDisable(kernel, t, d);
        throw e;
      }
      t.handle = [clo, chi];
    }
    // Put either in kcov_task_exit() or in KCOV_DISABLE.
    d.refs++;
    return 0;
  },
};

/** The canonical key of a handle from a path segment or {handle}; EINVAL for what kcov_remote_start WARNs on. */
function remoteKey(_kernel: Kernel, spec: RemoteSpec): string {
  let v: unknown = spec;
  if (typeof spec === 'object' && spec !== null) {
    if (spec.handle === undefined) fail('EINVAL', 'a Linux remote is a handle ({"handle": "0x..."}), not a (subsystem, id) pair');
    v = spec.handle;
  }
  const out = new Uint32Array(2);
  if (!parseU64(v, out, 0)) fail('EINVAL', `remote handle ${JSON.stringify(v)} is not a 64-bit unsigned value`);
  const [lo, hi] = [out[0]!, out[1]!];
  if (!kcovCheckHandle(lo, hi, true, true, true)) {
    fail('EINVAL', `handle ${formatU64(lo, hi)} is invalid: kcov_remote_start WARNs on it (kcov_check_handle)`);
  }
  return formatU64(lo, hi);
}

function traceMode(d: LinuxDescriptor): TraceMode {
  return d.kmode === 'TRACE_CMP' ? 'cmp' : 'pc';
}

function taskModeOf(d: LinuxDescriptor): LinuxTaskMode {
  return d.kmode === 'TRACE_CMP' ? 'TRACE_CMP' : 'TRACE_PC';
}

/** kcov_remote_start(handle) */
function enterSection(kernel: Kernel, site: SectionSite, key: string): void {
  // kcov_remote_start: `if (!in_task() && !in_softirq_really()) return;` (hardirq).
  if (site.context === 'interrupt') return;
  if (site.context === 'task') {
    const t = site.thread;
    // WARN_ON(in_task() && kcov_mode_enabled(mode)): nested start, or a task with its own kcov.
    if (modeEnabled(taskMode(t))) return;
    const r = remoteOf(kernel, key);
    if (r === undefined) return;
    const d = r.d;
    if (d.remoteSize === 0) return; // vmalloc(0) is NULL: no section
    d.refs++; // Put in kcov_remote_stop().
    let area: Area;
    try {
      area = remoteAreaGet(kernel, d.remoteSize);
    } catch (e) {
      kcovPut(kernel, d);
      throw e;
    }
    area.count = 0; // Reset coverage size.
    const target: TraceTarget = { area, mode: traceMode(d) };
    const sequence = d.sequence;
    kcovStart(t, d, target, taskModeOf(d));
    const data: SectionData = { d, area, sequence, thread: t, saved: null };
    t.section = { remote: key, context: 'task', target, data };
    return;
  }
  // softirq: the per-CPU area; the interrupted task's own state is saved.
  const cpu = site.cpu;
  const t = site.thread;
  if (cpu.section !== null) return; // WARN_ON(in_serving_softirq() && t->kcov_softirq)
  if (t !== null && t.data.kcovSoftirq === true) return;
  const r = remoteOf(kernel, key);
  if (r === undefined) return;
  const d = r.d;
  d.refs++;
  let area: Area;
  try {
    area = kernel.cpuArea(cpu, kernel.cpuAreaWords ?? KCOV_IRQ_AREA_SIZE);
  } catch (e) {
    kcovPut(kernel, d);
    throw e;
  }
  area.count = 0;
  const target: TraceTarget = { area, mode: traceMode(d) };
  let saved: SavedTask | null = null;
  if (t !== null) {
    // kcov_remote_softirq_start
    const m = taskMode(t);
    if (modeEnabled(m)) {
      saved = { kcov: t.kcov, trace: t.trace, mode: m, sequence: t.data.sequence };
      kcovStop(t);
    }
    t.data.kcovSoftirq = true;
    kcovStart(t, d, target, taskModeOf(d));
  }
  const data: SectionData = { d, area, sequence: d.sequence, thread: t, saved };
  cpu.section = { remote: key, context: 'softirq', target, data };
}

/** kcov_remote_stop() */
function leaveSection(kernel: Kernel, site: SectionSite): SectionLeave | void {
  let section: Section | null;
  if (site.context === 'task') {
    section = site.thread.section;
    if (section === null) return; // mode not enabled: nothing to stop
    kcovStop(site.thread);
    site.thread.section = null;
  } else {
    section = site.context === 'softirq' ? site.cpu.section : null;
    if (section === null) return;
    softirqStop(site.cpu, section);
  }
  const data = section.data as SectionData;
  const count = data.area.count;
  const d = data.d;
  let moved: number | null = null;
  // KCOV_DISABLE could have been called between kcov_remote_start() and kcov_remote_stop().
  if (data.sequence === d.sequence && d.remote && d.area !== null) {
    moved = kcovMoveArea(traceMode(d), d.area, data.area);
  }
  if (section.context === 'task') remoteAreaPut(kernel, data.area);
  kcovPut(kernel, d); // Get in kcov_remote_start().
  return { count, moved };
}

/** kcov_stop of the softirq section, then kcov_remote_softirq_stop: the interrupted task gets its state back. */
function softirqStop(cpu: Cpu, section: Section): void {
  const data = section.data as SectionData;
  const t = data.thread;
  cpu.section = null;
  if (t === null) return;
  kcovStop(t);
  t.data.kcovSoftirq = false;
  const s = data.saved;
  if (s !== null) {
    t.kcov = s.kcov;
    t.trace = s.trace;
    t.data.kcovMode = s.mode;
    t.data.sequence = s.sequence;
  }
}

/**
 * kcov_move_area(mode, dst_area, dst_area_size, src_area): append the
 * section's records after the descriptor's. Byte arithmetic as in the kernel:
 * nothing when dst_len is already past capacity, else min(free bytes, source
 * bytes), which in CMP mode may copy a partial record past the new count.
 * Returns the entries added to the count.
 */
export function kcovMoveArea(mode: TraceMode, dst: Area, src: Area): number {
  const countSize = 8;
  const entrySizeLog = mode === 'cmp' ? 5 : 3;
  const dstLen = dst.count;
  const srcLen = src.count;
  const dstBytes = dst.words * 8;
  // As arm can't divide u64 integers use log of entry size.
  if (dstLen > Math.floor((dstBytes - countSize) / 2 ** entrySizeLog)) return 0;
  const dstOccupied = countSize + dstLen * 2 ** entrySizeLog;
  const dstFree = dstBytes - dstOccupied;
  const bytesToMove = Math.min(dstFree, srcLen * 2 ** entrySizeLog);
  dst.bytes.set(src.bytes.subarray(countSize, countSize + bytesToMove), dstOccupied);
  const entriesMoved = Math.floor(bytesToMove / 2 ** entrySizeLog);
  dst.count = dstLen + entriesMoved;
  return entriesMoved;
}

/** GET /remotes: each handle with its descriptor and the sections open on it. */
function remotesView(kernel: Kernel): unknown[] {
  const open: { remote: string; d: LinuxDescriptor; where: Record<string, unknown> }[] = [];
  for (const t of kernel.threads.values()) {
    const s = t.section;
    if (s !== null) open.push({ remote: s.remote, d: (s.data as SectionData).d, where: { context: s.context, tid: t.tid } });
  }
  for (const c of kernel.cpus) {
    const s = c.section;
    if (s !== null) {
      const data = s.data as SectionData;
      open.push({ remote: s.remote, d: data.d, where: { context: s.context, cpu: c.id, tid: data.thread?.tid ?? null } });
    }
  }
  return [...kernel.remotes.values()].map((v) => {
    const r = v as LinuxRemote;
    return {
      handle: r.handle,
      common: r.common,
      fd: r.d.fd,
      owner: r.d.owner === null ? null : r.d.owner.tid,
      mode: traceMode(r.d),
      area_size: r.d.remoteSize,
      sections: open.filter((o) => o.remote === r.handle && o.d === r.d).map((o) => o.where),
    };
  });
}

setLinuxRemoteHooks({ reset: remoteReset });

const COMMANDS: Command[] = [];
for (const c of LINUX_COMMANDS) {
  COMMANDS.push(c);
  if (c.name === 'KCOV_DISABLE') COMMANDS.push(KCOV_REMOTE_ENABLE);
}

/** The Linux dialect with remote coverage: linux.ts's table plus KCOV_REMOTE_ENABLE and the section hooks. */
export const linuxRemote: Dialect = {
  ...linux,
  commands: COMMANDS,
  exit(kernel, t) {
    // A thread that exits inside a section leaves it first (see the header).
    if (t.section !== null) leaveSection(kernel, { context: 'task', thread: t });
    linux.exit(kernel, t);
  },
  remoteKey,
  enterSection,
  leaveSection,
  remotesView,
  destroy(kernel) {
    linux.destroy?.(kernel);
    pools.delete(kernel);
  },
};
