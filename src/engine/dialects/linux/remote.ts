/**
 * Linux remote coverage: KCOV_REMOTE_ENABLE, kcov_remote_start/stop and
 * kcov_move_area of kernel/kcov.c (linux-next), on top of shared.ts.
 *
 * The remote registry is LinuxState.remotes (kcov_remote_map), keyed by the canonical handle hex
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
import type { Area, TraceMode } from '../../area.js';
import { objectArg } from '../../args.js';
import type { Command, RemoteSpec, SectionLeave, SectionSite } from '../../dialect.js';
import { fail } from '../../errno.js';
import type { Cpu, TraceTarget } from '../../model.js';
import { formatU64, parseU64 } from '../../../wire/u64.js';
import { ioctl } from '../../../wire/ioctls.js';
import {
  LINUX_MODES, checkEnable, getMode, kcovDisable, kcovPut, kcovStart, kcovStop,
  type LinuxDescriptor, type LinuxKernel, type LinuxSection, type LinuxTaskMode, type LinuxThread, type LinuxTypes, type SavedTask,
} from './shared.js';

/** KCOV_REMOTE_MAX_HANDLES */
export const KCOV_REMOTE_MAX_HANDLES = 0x100;
/** CONFIG_KCOV_IRQ_AREA_SIZE default: words of each per-CPU softirq area. */
export const KCOV_IRQ_AREA_SIZE = 0x40000;
/** KCOV_SUBSYSTEM_COMMON and KCOV_SUBSYSTEM_USB, as the top byte of a handle. */
export const KCOV_SUBSYSTEM_COMMON = 0x00;
export const KCOV_SUBSYSTEM_USB = 0x01;
/** LONG_MAX / sizeof(unsigned long) = 0x0fffffffffffffff, as its high half. */
const AREA_SIZE_MAX_HI = 0x0fffffff;

/** kcov_remote_area_get, falling back to vmalloc (here: the budget, ENOMEM). */
function remoteAreaGet(kernel: LinuxKernel, words: number): Area {
  const free = kernel.state.pool.get(words);
  if (free !== undefined && free.length > 0) return free.pop()!;
  return kernel.allocArea(words, `remote section area (${words} words)`, 'sections');
}

/** kcov_remote_area_put */
function remoteAreaPut(kernel: LinuxKernel, area: Area): void {
  const p = kernel.state.pool;
  const list = p.get(area.words);
  if (list === undefined) p.set(area.words, [area]);
  else list.push(area);
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

/** kcov_remote_add: EEXIST when any descriptor already registered the handle. */
function remoteAdd(kernel: LinuxKernel, d: LinuxDescriptor, key: string, common: boolean): void {
  const other = kernel.state.remotes.get(key);
  if (other !== undefined) {
    fail('EEXIST', `KCOV_REMOTE_ENABLE: handle ${key} is already registered by fd ${other.d.fd}`);
  }
  kernel.state.remotes.set(key, { handle: key, d, common });
  if (common) d.commonHandle = key;
  else d.handles.push(key);
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

export const KCOV_REMOTE_ENABLE: Command<LinuxTypes> = {
  ...ioctl('linux', 'KCOV_REMOTE_ENABLE'),
  run(ctx) {
    const { kernel } = ctx;
    const d = ctx.d;
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
export function remoteKey(_kernel: LinuxKernel, spec: RemoteSpec): string {
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
export function enterSection(kernel: LinuxKernel, site: SectionSite<LinuxTypes>, key: string): void {
  // kcov_remote_start: `if (!in_task() && !in_softirq_really()) return;` (hardirq).
  if (site.context === 'interrupt') return;
  if (site.context === 'task') {
    const t = site.thread;
    // WARN_ON(in_task() && kcov_mode_enabled(mode)): nested start, or a task with its own kcov.
    if (modeEnabled(t.kcovMode)) return;
    const r = kernel.state.remotes.get(key);
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
    t.section = { remote: key, context: 'task', target, d, area, sequence, thread: t, saved: null };
    return;
  }
  // softirq: the per-CPU area; the interrupted task's own state is saved.
  const cpu = site.cpu;
  const t = site.thread;
  if (cpu.section !== null) return; // WARN_ON(in_serving_softirq() && t->kcov_softirq)
  if (t !== null && t.kcovSoftirq) return;
  const r = kernel.state.remotes.get(key);
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
    const m = t.kcovMode;
    if (modeEnabled(m)) {
      saved = { kcov: t.kcov, trace: t.trace, mode: m, sequence: t.sequence };
      kcovStop(t);
    }
    t.kcovSoftirq = true;
    kcovStart(t, d, target, taskModeOf(d));
  }
  cpu.section = { remote: key, context: 'softirq', target, d, area, sequence: d.sequence, thread: t, saved };
}

/** kcov_remote_stop() */
export function leaveSection(kernel: LinuxKernel, site: SectionSite<LinuxTypes>): SectionLeave | void {
  let section: LinuxSection | null;
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
  const data = section;
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
function softirqStop(cpu: Cpu<LinuxTypes>, section: LinuxSection): void {
  const t = section.thread;
  cpu.section = null;
  if (t === null) return;
  kcovStop(t);
  t.kcovSoftirq = false;
  const s = section.saved;
  if (s !== null) {
    t.kcov = s.kcov;
    t.trace = s.trace;
    t.kcovMode = s.mode;
    t.sequence = s.sequence;
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
export function remotesView(kernel: LinuxKernel): unknown[] {
  const open: { remote: string; d: LinuxDescriptor; where: Record<string, unknown> }[] = [];
  for (const t of kernel.threads.values()) {
    const s = t.section;
    if (s !== null) open.push({ remote: s.remote, d: s.d, where: { context: s.context, tid: t.tid } });
  }
  for (const c of kernel.cpus) {
    const s = c.section;
    if (s !== null) open.push({ remote: s.remote, d: s.d, where: { context: s.context, cpu: c.id, tid: s.thread?.tid ?? null } });
  }
  return [...kernel.state.remotes.values()].map((r) => {
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

/** A thread that exits inside a section leaves it first (see the header). */
export function leaveOnExit(kernel: LinuxKernel, t: LinuxThread): void {
  if (t.section !== null) leaveSection(kernel, { context: 'task', thread: t });
}
