import t from 'tap';
import { request } from 'undici';
import { SnapshotPool } from '#src/http/codecs/snapshot-pool.js';
import { Area } from '#src/engine/area.js';
import { Client, makeApp, pcs } from '#test/helpers.js';

t.test('the pool hands out copies and reuses only released buffers of the same size', async (t) => {
  const pool = new SnapshotPool(16, 64);
  const src = new Uint8Array(32).fill(7);
  const a = pool.copy(src);
  t.same([...a], [...src]);
  src.fill(9);
  t.equal(a[0], 7, 'a copy, not a view');
  pool.release(a);
  t.equal(pool.idleBytes, 32);
  const b = pool.copy(src);
  t.equal(b, a, 'the released buffer comes back');
  t.equal(b[0], 9, 'overwritten with the new contents');
  t.equal(pool.idleBytes, 0);
  pool.release(b);
  pool.release(Buffer.alloc(32));
  pool.release(Buffer.alloc(32));
  t.equal(pool.idleBytes, 64, 'never more than maxBytes idle');
  pool.release(Buffer.alloc(8));
  t.equal(pool.idleBytes, 64, 'small buffers are not kept');
});

t.test('a whole-area copy is shared until the area is written, and never reused once a reply from it was cut off', async (t) => {
  const pool = new SnapshotPool(16, 64);
  const area = Area.allocate(4); // 32 bytes
  area.pushPC(7, 0);
  const a = pool.whole(area.stamp, area.bytes);
  const b = pool.whole(area.stamp, area.bytes);
  t.equal(b, a, 'unwritten since: the same copy');
  t.equal(a.users, 2);
  t.equal(pool.keptBytes, 32);
  pool.done(a, true);
  pool.done(b, true);
  t.equal(pool.idleBytes, 0, 'kept, not pooled');
  area.pushPC(8, 0);
  const c = pool.whole(area.stamp, area.bytes);
  t.not(c, a, 'written since: a new copy');
  t.equal(c.buf.readUInt32LE(16), 8, 'of the area as it is now');
  t.equal(c.buf, a.buf, 'into the old buffer, which no reply held any more');
  pool.done(c, false); // the socket may still hold it
  const held = Buffer.from(c.buf);
  area.count = 0;
  const d = pool.whole(area.stamp, area.bytes);
  t.not(d.buf, c.buf, 'a copy a cut-off reply may still be writing is never written into');
  t.same(c.buf, held);
  t.equal(d.buf.readUInt32LE(0), 0);
  pool.done(d, true);
  // Other areas take the idle room of older copies, within maxBytes.
  const others = [Area.allocate(4), Area.allocate(4), Area.allocate(4)];
  for (const o of others) pool.done(pool.whole(o.stamp, o.bytes), true);
  t.ok(pool.keptBytes + pool.idleBytes <= 64, 'never more than maxBytes idle');
});

t.test('successive binary reads of a large area over a socket each show the area of their instant', async (t) => {
  const app = await makeApp(t);
  const origin = await app.listen({ port: 0, host: '127.0.0.1' });
  const c = new Client(app);
  const fd = await c.open();
  await c.ok(fd, 'KCOV_INIT_TRACE', 1, 65536);
  await c.ok(fd, 'KCOV_ENABLE', 1, 0);
  const url = `${origin}/v1/kernels/default/descriptors/${fd}/coverage`;
  for (let round = 1; round <= 4; round++) {
    await c.binary(1, pcs(0x1000 * round));
    const res = await request(url, { headers: { accept: 'application/octet-stream' } });
    const body = Buffer.from(await res.body.arrayBuffer());
    t.equal(body.length, 65536 * 8);
    t.equal(body.readBigUInt64LE(0), BigInt(round), `count after ${round} batches`);
    t.equal(body.readBigUInt64LE(round * 8), BigInt(0x1000 * round), 'the newest record');
    t.equal(body.readBigUInt64LE((round + 1) * 8), 0n, 'nothing past it');
  }
});
