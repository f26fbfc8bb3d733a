/** The ioctl table: request numbers as the headers' macros compute them on LP64, and the engine built from it. */
import t from 'tap';
import { DIALECTS } from '../../src/engine/dialects/index.js';
import { DIALECT_WIRE, ioctl, ioctlsOf, type IoctlDef } from '../../src/wire/ioctls.js';
import { DIALECT_NAMES } from '../../src/wire/names.js';

const SIZES: Record<string, number> = {
  int: 4, 'unsigned long': 8, uint64_t: 8,
  // struct kcov_remote_arg: three __u32, padding, __aligned_u64 common_handle (uapi/linux/kcov.h)
  'struct kcov_remote_arg': 24,
  // _IOW('K', 4, struct kio_remote_attach *): the size of a pointer (OpenBSD sys/kcov.h quirk)
  'struct kio_remote_attach *': 8,
  'struct kcov_ioc_remote_attach': 16,
};

/** Linux asm-generic/ioctl.h: dir<<30 | size<<16 | type<<8 | nr, _IOC_WRITE 1, _IOC_READ 2. */
function linuxIoc(macro: string): number {
  const m = /^_IO(R|W|WR)?\('(.)', (\d+)(?:, (.+))?\)$/.exec(macro)!;
  const dir = m[1] === undefined ? 0 : m[1] === 'R' ? 2 : m[1] === 'W' ? 1 : 3;
  const size = m[4] === undefined ? 0 : SIZES[m[4]]!;
  return ((dir << 30) | (size << 16) | (m[2]!.charCodeAt(0) << 8) | Number(m[3])) >>> 0;
}

/** BSD sys/ioccom.h: IOC_VOID 0x20000000, IOC_OUT 0x40000000, IOC_IN 0x80000000; _IOWINT is IOC_VOID with sizeof(int). */
function bsdIoc(macro: string): number {
  const m = /^_IO(R|W|WR|WINT)?\('(.)', (\d+)(?:, (.+))?\)$/.exec(macro)!;
  const dir = m[1] === undefined || m[1] === 'WINT' ? 0x20000000 : m[1] === 'R' ? 0x40000000 : m[1] === 'W' ? 0x80000000 : 0xc0000000;
  const size = m[1] === 'WINT' ? 4 : m[4] === undefined ? 0 : SIZES[m[4]]!;
  return (dir | ((size & 0x1fff) << 16) | (m[2]!.charCodeAt(0) << 8) | Number(m[3])) >>> 0;
}

for (const d of DIALECT_NAMES) {
  t.test(`${d}: request numbers are what ${DIALECT_WIRE[d].header} computes`, async (t) => {
    for (const c of ioctlsOf(d) as readonly IoctlDef[]) {
      t.equal(c.nr, d === 'linux' ? linuxIoc(c.macro) : bsdIoc(c.macro), `${c.name} ${c.macro}`);
    }
  });

  t.test(`${d}: the engine's command table is the wire table`, async (t) => {
    const dialect = DIALECTS[d]!;
    const engine = dialect.commands.map((c) => `${c.name} ${c.nr}`).sort();
    const wire = ioctlsOf(d).map((c) => `${c.name} ${c.nr}`).sort();
    t.same(engine, wire);
    t.equal(dialect.unknownCommand, DIALECT_WIRE[d].unknownIoctl);
  });
}

t.test('a name the dialect does not have is a programming error', async (t) => {
  t.same(ioctl('linux', 'KCOV_ENABLE'), { name: 'KCOV_ENABLE', nr: 0x6364 });
  t.throws(() => ioctl('linux', 'KIOENABLE' as never), /linux has no ioctl KIOENABLE/);
});
