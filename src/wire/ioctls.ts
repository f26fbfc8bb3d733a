/**
 * The kcov ioctls of each dialect, written once: name, request number on a
 * 64-bit kernel, the header's macro, the argument and what it means. The
 * engine's command tables take their names and numbers from here; the ioctl
 * route's OpenAPI description, the CLI's help, the client's types and the docs
 * are built from it. Pure data, in each driver's order (numbers: ABI.md; a
 * test recomputes them from the macros).
 */
import type { DialectName, ErrnoName } from './names.js';

/** How the argument reaches the driver. */
export type IoctlArgKind =
  /** No argument (an `_IO` request); whatever is sent is ignored unless the driver checks it. */
  | 'none'
  /** An integer passed by value (Linux `unsigned long`, FreeBSD `_IOWINT`). */
  | 'value'
  /** A pointer to an integer (`_IOW(..., int)`): the BSDs copy it in. */
  | 'pointer'
  /** A pointer to a struct, given as a JSON object. */
  | 'struct';

export interface IoctlDef {
  readonly name: string;
  /** Request number as the header computes it on a 64-bit kernel. */
  readonly nr: number;
  /** The header's definition. */
  readonly macro: string;
  readonly arg: IoctlArgKind;
  /** The argument, its range and the mode names it takes. */
  readonly doc: string;
}

export interface DialectWire {
  /** The driver source kcovd follows. */
  readonly source: string;
  /** The header that defines the requests. */
  readonly header: string;
  /** The device userspace opens. */
  readonly device: string;
  /** Mode numbers of the enable ioctl, by the names the API also accepts. */
  readonly modes: Readonly<Record<string, number>>;
  /** Errno of a request the driver does not know. */
  readonly unknownIoctl: ErrnoName;
  readonly ioctls: readonly IoctlDef[];
}

export const DIALECT_WIRE = {
  linux: {
    source: 'kernel/kcov.c',
    header: 'include/uapi/linux/kcov.h',
    device: '/sys/kernel/debug/kcov',
    modes: { pc: 0, cmp: 1 },
    unknownIoctl: 'ENOTTY',
    ioctls: [
      { name: 'KCOV_INIT_TRACE', nr: 0x80086301, macro: "_IOR('c', 1, unsigned long)", arg: 'value', doc: 'size of the area in words, 2 .. INT_MAX/8' },
      { name: 'KCOV_ENABLE', nr: 0x6364, macro: "_IO('c', 100)", arg: 'value', doc: 'trace mode: KCOV_TRACE_PC 0 / "pc", KCOV_TRACE_CMP 1 / "cmp"' },
      { name: 'KCOV_DISABLE', nr: 0x6365, macro: "_IO('c', 101)", arg: 'value', doc: 'must be 0' },
      {
        name: 'KCOV_REMOTE_ENABLE', nr: 0x40186366, macro: "_IOW('c', 102, struct kcov_remote_arg)", arg: 'struct',
        doc: 'struct kcov_remote_arg: {"trace_mode": 0|1|"pc"|"cmp", "area_size": words, "handles": ["0x0100000000000001"], "common_handle": "0x2a"}',
      },
      { name: 'KCOV_UNIQUE_ENABLE', nr: 0x40086367, macro: "_IOW('c', 103, unsigned long)", arg: 'value', doc: 'bitmap words at the start of the area, 1 .. size-2' },
      { name: 'KCOV_RESET_TRACE', nr: 0x6368, macro: "_IO('c', 104)", arg: 'value', doc: 'must be 0' },
    ],
  },
  openbsd: {
    source: 'sys/dev/kcov.c v1.51',
    header: 'sys/sys/kcov.h',
    device: '/dev/kcov',
    modes: { pc: 1, cmp: 2 },
    unknownIoctl: 'ENOTTY',
    ioctls: [
      { name: 'KIOSETBUFSIZE', nr: 0x80084b01, macro: "_IOW('K', 1, unsigned long)", arg: 'pointer', doc: 'entries, 1 .. 512Ki (the first holds the count)' },
      { name: 'KIOENABLE', nr: 0x80044b02, macro: "_IOW('K', 2, int)", arg: 'pointer', doc: 'mode: KCOV_MODE_TRACE_PC 1 / "pc", KCOV_MODE_TRACE_CMP 2 / "cmp"' },
      { name: 'KIODISABLE', nr: 0x20004b03, macro: "_IO('K', 3)", arg: 'none', doc: 'none' },
      {
        name: 'KIOREMOTEATTACH', nr: 0x80084b04, macro: "_IOW('K', 4, struct kio_remote_attach *)", arg: 'struct',
        doc: 'struct kio_remote_attach: {"subsystem": 0 (KCOV_REMOTE_COMMON), "id"} (id is ignored, missing fields are 0)',
      },
    ],
  },
  netbsd: {
    source: 'sys/kern/subr_kcov.c v1.18',
    header: 'sys/sys/kcov.h',
    device: '/dev/kcov',
    modes: { none: 0, pc: 1, cmp: 2 },
    unknownIoctl: 'EINVAL',
    ioctls: [
      { name: 'KCOV_IOC_SETBUFSIZE', nr: 0x80084b01, macro: "_IOW('K', 1, uint64_t)", arg: 'pointer', doc: "entries, 2 .. KCOV_BUF_MAX_ENTRIES (256Ki, or the kernel's max_entries)" },
      { name: 'KCOV_IOC_ENABLE', nr: 0x80044b02, macro: "_IOW('K', 2, int)", arg: 'pointer', doc: 'mode: KCOV_MODE_NONE 0 / "none", KCOV_MODE_TRACE_PC 1 / "pc", KCOV_MODE_TRACE_CMP 2 / "cmp"' },
      { name: 'KCOV_IOC_DISABLE', nr: 0x20004b03, macro: "_IO('K', 3)", arg: 'none', doc: 'none' },
      {
        name: 'KCOV_IOC_REMOTE_ATTACH', nr: 0x80104b0a, macro: "_IOW('K', 10, struct kcov_ioc_remote_attach)", arg: 'struct',
        doc: 'struct kcov_ioc_remote_attach: {"subsystem", "id"} (uint64_t each)',
      },
      { name: 'KCOV_IOC_REMOTE_DETACH', nr: 0x20004b0b, macro: "_IO('K', 11)", arg: 'none', doc: 'none' },
    ],
  },
  freebsd: {
    source: 'sys/kern/kern_kcov.c',
    header: 'sys/sys/kcov.h',
    device: '/dev/kcov',
    modes: { pc: 0, cmp: 1 },
    unknownIoctl: 'EINVAL',
    ioctls: [
      { name: 'KIOSETBUFSIZE', nr: 0x20046304, macro: "_IOWINT('c', 4)", arg: 'value', doc: 'entries (read as u_int), 2 .. kern.kcov.max_entries' },
      { name: 'KIOENABLE', nr: 0x20046302, macro: "_IOWINT('c', 2)", arg: 'value', doc: 'mode: KCOV_MODE_TRACE_PC 0 / "pc", KCOV_MODE_TRACE_CMP 1 / "cmp"' },
      { name: 'KIODISABLE', nr: 0x20006303, macro: "_IO('c', 3)", arg: 'none', doc: 'none (the argument is ignored)' },
    ],
  },
} as const satisfies Record<DialectName, DialectWire>;

/** The ioctl names of a dialect (of any dialect when D is the union). */
export type IoctlName<D extends DialectName = DialectName> = (typeof DIALECT_WIRE)[D]['ioctls'][number]['name'];

/** One dialect's ioctls, in the driver's order. */
export function ioctlsOf(dialect: DialectName): readonly IoctlDef[] {
  return DIALECT_WIRE[dialect].ioctls;
}

/** The entry of a named ioctl; throws for a name the dialect does not have (a programming error). */
export function ioctlDef<D extends DialectName>(dialect: D, name: IoctlName<D>): IoctlDef {
  const def = DIALECT_WIRE[dialect].ioctls.find((c: IoctlDef) => c.name === name);
  if (def === undefined) throw new Error(`${dialect} has no ioctl ${name}`);
  return def;
}

/** Name and request number, for a command table: `{ ...ioctl('linux', 'KCOV_ENABLE'), run }`. */
export function ioctl<D extends DialectName>(dialect: D, name: IoctlName<D>): { readonly name: IoctlName<D>; readonly nr: number } {
  return { name, nr: ioctlDef(dialect, name).nr };
}

/** Request number as lowercase hex (0x6364). */
export function hexNr(nr: number): string {
  return '0x' + nr.toString(16);
}

/** One line an ioctl: "KCOV_INIT_TRACE (0x80086301): size of the area ...". */
export function ioctlSummary(dialect: DialectName): string[] {
  return ioctlsOf(dialect).map((c) => `${c.name} (${hexNr(c.nr)})${c.arg === 'none' ? '' : `: ${c.doc}`}`);
}
