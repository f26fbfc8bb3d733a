/** The client commands of the kcovd CLI, as child processes against a live server (a file of its own: each spawn costs a node start). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { kcovd, listenApp } from '../live.js';

const tmp = mkdtempSync(join(tmpdir(), 'kcovd-cli-'));
t.teardown(() => rmSync(tmp, { recursive: true, force: true }));

t.test('kernels, descriptors, ioctl, events and cover', async (t) => {
  const { url } = await listenApp(t);
  const ks = await kcovd(['kernels', '--json'], { url });
  t.equal(ks.code, 0, ks.stderr);
  t.same(JSON.parse(ks.stdout).kernels.map((k: { name: string }) => k.name), ['default']);
  const made = await kcovd(['create-kernel', '--dialect', 'linux', '--name', 'lx', '--ncpus', '2'], { url });
  t.equal(made.stdout, 'lx\n', 'create-kernel prints the name');
  const text = await kcovd(['kernels'], { url });
  t.match(text.stdout, /^NAME\s+DIALECT/);
  t.match(text.stdout, /\nlx\s+linux\s+2\s/);
  t.equal((await kcovd(['delete-kernel', 'lx'], { url })).code, 0);

  const open = await kcovd(['open', '--tid', '7'], { url });
  t.equal(open.code, 0, open.stderr);
  const fd = open.stdout.trim();
  t.match(fd, /^\d+$/, 'open prints the fd alone');
  const init = await kcovd(['ioctl', fd, 'KCOV_INIT_TRACE', '--tid', '7', '--arg', '32'], { url });
  t.match(init.stdout, /^ret 0: fd \d+ INIT/);
  const en = await kcovd(['ioctl', fd, '0x6364', '--tid', '7', '--arg', 'pc', '--json'], { url });
  t.match(JSON.parse(en.stdout), { ret: 0, descriptor: { state: 'TRACE_PC', mode: 'pc', owner: 7 } }, 'request number works too');

  // text lines on stdin (auto-detected)
  const ev = await kcovd(['events', '--tid', '7'], { url, input: '0xffffffff81000010\n# comment\n\n0x20\n30\n' });
  t.equal(ev.code, 0, ev.stderr);
  t.equal(ev.stdout, 'posted 3 records in 1 requests: accepted 3, dropped 0, ignored 0, count 3\n');
  t.equal(ev.stderr, '', 'no progress bar when stderr is not a terminal');

  // a binary file in several batches, in order
  const bin = Buffer.alloc(10 * 8);
  for (let i = 0; i < 10; i++) bin.writeUInt32LE(0x1000 + i, i * 8);
  writeFileSync(join(tmp, 'trace.bin'), bin);
  const evb = await kcovd(['events', '--tid', '7', '--batch', '4', '--json', join(tmp, 'trace.bin')], { url });
  t.match(JSON.parse(evb.stdout), { requests: 3, records: 10, accepted: 10, count: 13 }, '10 records in batches of 4');

  // a JSON file
  writeFileSync(join(tmp, 'ev.json'), JSON.stringify({ pcs: ['0x40'], sites: ['fs/open.c:42'] }));
  const evj = await kcovd(['events', '--tid', '7', join(tmp, 'ev.json')], { url });
  t.match(evj.stdout, /posted 2 records in 1 requests: accepted 2/);

  const cover = await kcovd(['cover', fd], { url });
  const lines = cover.stdout.trim().split('\n');
  t.equal(lines.length, 15);
  t.same(lines.slice(0, 4), ['0xffffffff81000010', '0x20', '0x1e', '0x1000'], 'rawcover text, in order');
  t.equal(lines[13], '0x40');
  t.match(lines[14], /^0x[0-9a-f]{16}$/, 'a site as its FNV-1a PC');
  const cj = await kcovd(['cover', fd, '--json'], { url });
  t.same(JSON.parse(cj.stdout).pcs, lines);
  const raw = await kcovd(['cover', fd, '--format', 'raw', '--reset'], { url });
  t.equal(raw.raw.length, 32 * 8, 'raw is the whole area');
  t.equal(raw.raw.readUInt32LE(0), 15, 'word 0 is the count');
  t.equal(raw.raw.readUInt32LE(8 * 2), 0x20);
  t.equal((await kcovd(['cover', fd], { url })).stdout, '', '--reset zeroed the count');

  // round trip: cover's text output is events' text input
  const again = await kcovd(['events', '--tid', '7', '--format', 'text'], { url, input: cover.stdout });
  t.match(again.stdout, /accepted 15/);
  t.equal((await kcovd(['cover', fd], { url })).stdout, cover.stdout);

  const ds = await kcovd(['descriptors'], { url });
  t.match(ds.stdout, new RegExp(`\\n${fd}\\s+TRACE_PC\\s+pc\\s+32\\s+15\\s+31\\s+7\\n`));
  const th = await kcovd(['threads', '--json'], { url });
  t.match(JSON.parse(th.stdout).threads, [{ tid: 7, fd: Number(fd) }]);
  t.equal((await kcovd(['close', fd], { url })).code, 0);
});
