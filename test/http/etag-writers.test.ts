/**
 * Snapshot ETags come from the area's write stamp, not a digest of its bytes:
 * every path that writes an area must change the tag (else a poller's 304 would
 * hide new coverage), and a request that writes nothing must leave it alone
 * (else polling saves nothing).
 */
import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { Client, json, makeApp, pcs } from '#test/helpers.js';

interface Assert {
  same(...args: any[]): unknown;
  not(...args: any[]): unknown;
}

type Tags = { json: string; text: string; binary: string };

async function tags(app: FastifyInstance, c: Client, fd: number): Promise<Tags> {
  const get = async (accept: string) => {
    const res = await c.coverage(fd, accept);
    if (res.statusCode !== 200) throw new Error(`coverage: ${res.statusCode} ${res.body}`);
    const tag = String(res.headers.etag);
    // The tag just seen names the area as it is: 304 until something writes it.
    const again = await app.inject({ method: 'GET', url: `${c.base}/descriptors/${fd}/coverage`, headers: { accept, 'if-none-match': tag } });
    if (again.statusCode !== 304) throw new Error(`${accept}: ${again.statusCode} for the tag just served`);
    return tag;
  };
  return { json: await get('application/json'), text: await get('text/plain'), binary: await get('application/octet-stream') };
}

/** Asserts what `op` does to the three tags of fd. */
function tracker(t: Assert, app: FastifyInstance, c: Client, fd: number) {
  let last: Tags | undefined;
  // records: what JSON and text show changed, the raw bytes need not; area: the raw bytes changed, the records shown need not.
  return async (what: string, expect: 'changed' | 'same' | 'records' | 'area', op: () => Promise<unknown>) => {
    last ??= await tags(app, c, fd);
    await op();
    const now = await tags(app, c, fd);
    if (expect === 'same') t.same(now, last, `${what}: every tag stays`);
    else if (expect === 'area') t.not(now.binary, last.binary, `${what}: the binary tag changes`);
    else {
      t.not(now.json, last.json, `${what}: the JSON tag changes`);
      t.not(now.text, last.text, `${what}: the text tag changes`);
      if (expect === 'changed') t.not(now.binary, last.binary, `${what}: the binary tag changes`);
    }
    last = now;
  };
}

t.test('linux: every writer of a descriptor area changes its tags; nothing else does', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open(1);
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 8); // 7 PC records
  const step = tracker(t, app, c, fd);
  await step('KCOV_ENABLE alone', 'same', () => c.ok(fd, 'KCOV_ENABLE', 1, 0));
  await step('reading', 'same', () => c.cover(fd));
  await step('a JSON batch', 'changed', () => c.events(1, { pcs: [1, 2] }));
  await step('a binary batch', 'changed', () => c.binary(1, pcs(3)));
  await step('a CMP batch the PC trace ignores', 'same', () => c.events(1, { cmps: [{ size: 1, arg1: 1, arg2: 2, pc: 3 }] }));
  await step('events of a thread that traces nothing', 'same', () => c.events(2, { pcs: [9] }));
  await step('a malformed batch (refused whole)', 'same', () => c.events(1, { pcs: [1, 'nope'] }));
  await step('a truncated binary batch (refused whole)', 'same', () => c.binary(1, Buffer.alloc(12)));
  await step('PUT count', 'changed', () => app.inject({ method: 'PUT', url: `${c.base}/descriptors/${fd}/coverage/count`, payload: { count: 1 } }));
  // Records past the count are stale but still in the area: rewriting them is a change of the binary view too.
  await step('a batch over stale records', 'changed', () => c.events(1, { pcs: [2] }));
  await step('filling the area', 'changed', () => c.events(1, { pcs: [4, 5, 6, 7, 8, 9] }));
  t.equal((await c.cover(fd)).count, 7);
  await step('a batch into the full area (dropped)', 'same', () => c.events(1, { pcs: [10] }));
  await step('KCOV_RESET_TRACE', 'changed', () => c.ok(fd, 'KCOV_RESET_TRACE', 1, 0));
  await step('KCOV_RESET_TRACE by a thread it refuses', 'same', () => c.ioctl(fd, 'KCOV_RESET_TRACE', 2, 0));
  await step('another batch', 'changed', () => c.events(1, { pcs: [11] }));
  await step('GET ?reset=true', 'changed', () => c.coverage(fd, 'application/json', '?reset=true'));
  await step('another batch', 'changed', () => c.events(1, { pcs: [12, 13] }));
  await step('KCOV_DISABLE (writes nothing)', 'same', () => c.ok(fd, 'KCOV_DISABLE', 1, 0));
  // Same bytes, shown as CMP records now: JSON and text change, the raw area does not.
  await step('KCOV_ENABLE in CMP mode', 'records', () => c.ok(fd, 'KCOV_ENABLE', 1, 1));
  await step('KCOV_DISABLE', 'same', () => c.ok(fd, 'KCOV_DISABLE', 1, 0));
  // The bitmap takes the first words: the trace is another window of the same memory.
  await step('KCOV_UNIQUE_ENABLE', 'records', () => c.ok(fd, 'KCOV_UNIQUE_ENABLE', 1, 2));
  await step('KCOV_RESET_TRACE under unique', 'changed', () => c.ok(fd, 'KCOV_RESET_TRACE', 1, 0));
  await step('a unique batch', 'changed', () => c.events(1, { pcs: [1, 2, 3, 4, 5] }));
  t.equal((await c.cover(fd)).count, 5, 'the trace holds 5 records after a 2-word bitmap');
  await step('PCs already in the bitmap (ignored)', 'same', () => c.events(1, { pcs: [1, 2] }));
  // A new PC whose record no longer fits still sets its bit: the bitmap is part of the area.
  await step('a new PC into the full trace', 'area', () => c.events(1, { pcs: [6] }));
  t.equal((await c.cover(fd)).count, 5);
  await step('the same PC again (seen: ignored)', 'same', () => c.events(1, { pcs: [6] }));
});

t.test('linux remote: kcov_remote_stop moving records into the descriptor changes its tags', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 64);
  await c.ok(fd, 'KCOV_REMOTE_ENABLE', 1, { trace_mode: 0, area_size: 32, common_handle: '0x2a' });
  const step = tracker(t, app, c, fd);
  const child = json(await c.thread(2, { pid: 1, parent: 1 }));
  await step('entering a section', 'same', () => app.inject({ method: 'POST', url: `${c.base}/threads/2/remote`, payload: { handle: child.handle } }));
  await step('events into the section area', 'same', () => c.events(2, { pcs: ['0x10', '0x20'] }));
  await step('leaving it (kcov_move_area)', 'changed', () => app.inject({ method: 'DELETE', url: `${c.base}/threads/2/remote` }));
  t.same((await c.cover(fd)).pcs, ['0x10', '0x20']);
  // A one-shot section of a registered handle: moved at once.
  const fd2 = await c.open();
  await c.ok(fd2, 'KCOV_INIT_TRACE', 3, 8);
  await c.ok(fd2, 'KCOV_REMOTE_ENABLE', 3, { area_size: 16, handles: ['0x0100000000000001'] });
  const step2 = tracker(t, app, c, fd2);
  await step2('a one-shot section', 'changed', () => app.inject({ method: 'POST', url: `${c.base}/remotes/0x0100000000000001/events?context=task&tid=7`, payload: { pcs: [1, 2] } }));
});

t.test('openbsd: an interrupt section copied into the descriptor (kd_copy) changes its tags', async (t) => {
  const app = await makeApp(t);
  await app.inject({ method: 'POST', url: '/v1/kernels', payload: { name: 'obsd', dialect: 'openbsd' } });
  const c = new Client(app, 'obsd');
  const fd = await c.open(1);
  await c.ok(fd, 'KIOSETBUFSIZE', 1, 64);
  await c.ok(fd, 'KIOREMOTEATTACH', 1, { subsystem: 0, id: 0 });
  await c.ok(fd, 'KIOENABLE', 1, 'pc');
  const step = tracker(t, app, c, fd);
  await step('a task section of the process', 'changed', () => app.inject({ method: 'POST', url: `${c.base}/remotes/0:1/events?context=task&tid=100`, payload: { pcs: [0xa] } }));
  await step('an interrupt section', 'changed', () => app.inject({ method: 'POST', url: `${c.base}/remotes/0:1/events?context=interrupt&cpu=0`, payload: { pcs: [0xb, 0xc] } }));
  t.equal((await c.cover(fd)).count, 3);
});

t.test('tags differ between areas and between descriptors of equal bytes', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const a = await c.open(1);
  const b = await c.open(2);
  for (const [fd, tid] of [[a, 1], [b, 2]] as const) {
    await c.ok(fd, 'KCOV_INIT_TRACE', tid, 8);
    await c.ok(fd, 'KCOV_ENABLE', tid, 0);
  }
  const ta = await tags(app, c, a);
  const tb = await tags(app, c, b);
  t.not(ta.binary, tb.binary, 'two empty areas: two tags (a tag names its area)');
  t.not(ta.json, tb.json);
});

t.test('an area recycled from the pool never answers 304 to its last owner\'s tag', async (t) => {
  const app = await makeApp(t);
  const c = new Client(app);
  const words = 1 << 17; // 1 MiB: pooled when freed
  const a = await c.open(1);
  await c.ok(a, 'KCOV_INIT_TRACE', 1, words);
  await c.ok(a, 'KCOV_ENABLE', 1, 0);
  await c.events(1, { pcs: [1, 2, 3] });
  const old = await tags(app, c, a);
  await c.ok(a, 'KCOV_DISABLE', 1, 0);
  t.equal((await c.close(a)).statusCode, 204);
  const b = await c.open(1);
  await c.ok(b, 'KCOV_INIT_TRACE', 1, words);
  t.equal((await c.cover(b)).count, 0, 'zeroed as a fresh area');
  for (const [accept, tag] of [['application/octet-stream', old.binary], ['application/json', old.json]] as const) {
    const res = await app.inject({ method: 'GET', url: `${c.base}/descriptors/${b}/coverage`, headers: { accept, 'if-none-match': tag } });
    t.equal(res.statusCode, 200, `${accept}: the old tag does not match`);
  }
});
