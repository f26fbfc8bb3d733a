/** Over a real listening socket with undici: keep-alive, binary bodies, chunked uploads. */
import t from 'tap';
import { Pool } from 'undici';
import { makeApp, pcs } from '../helpers.js';

t.test('a real client on a real socket runs the loop and reads the area back', async (t) => {
  const app = await makeApp(t);
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  const pool = new Pool(address, { connections: 2 });
  t.teardown(() => pool.close());
  const req = async (method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const isBin = body instanceof Uint8Array || (typeof body === 'object' && body !== null && Symbol.asyncIterator in body);
    const res = await pool.request({
      method,
      path,
      headers: { 'content-type': isBin ? 'application/octet-stream' : 'application/json', ...headers },
      body: body === undefined ? undefined : isBin ? (body as Uint8Array) : JSON.stringify(body),
    });
    const buf = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, buf, headers: res.headers };
  };
  const open = await req('POST', '/v1/kernels/default/descriptors', {});
  t.equal(open.status, 201);
  const fd = JSON.parse(open.buf.toString()).fd;
  t.equal((await req('POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid: 9, arg: 1024 })).status, 200);
  t.equal((await req('POST', `/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid: 9, arg: 0 })).status, 200);
  const many = pcs(...Array.from({ length: 500 }, (_, i) => 0x1000 + i));
  const r1 = await req('POST', '/v1/kernels/default/threads/9/events?kind=pc', many);
  t.same(JSON.parse(r1.buf.toString()), { accepted: 500, dropped: 0, ignored: 0, count: 500 });
  async function* dribble() {
    // chunked transfer, each piece cutting a record in two
    const more = pcs(...Array.from({ length: 600 }, (_, i) => 0x9000 + i));
    for (let off = 0; off < more.length; off += 1001) yield more.subarray(off, off + 1001);
  }
  const r2 = await req('POST', '/v1/kernels/default/threads/9/events', dribble());
  t.same(JSON.parse(r2.buf.toString()), { accepted: 523, dropped: 77, ignored: 0, count: 1023 }, 'fills to size - 1, drops the rest');
  const area = await req('GET', `/v1/kernels/default/descriptors/${fd}/coverage`, undefined, { accept: 'application/octet-stream' });
  t.equal(area.status, 200);
  t.equal(area.buf.length, 1024 * 8);
  t.equal(area.buf.readBigUInt64LE(0), 1023n);
  t.equal(area.buf.readBigUInt64LE(8), 0x1000n);
  t.equal(area.buf.readBigUInt64LE(501 * 8), 0x9000n);
  t.equal(area.buf.readBigUInt64LE(1023 * 8), BigInt(0x9000 + 522));
});
