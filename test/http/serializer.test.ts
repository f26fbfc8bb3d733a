/**
 * Replies are written by fast-json-stringify from each route's zod response
 * schema turned into JSON Schema (src/http/serializer.ts). Here an app runs
 * both serializers on every reply of a workload over all four dialects and
 * every JSON route: each reply must be byte-for-byte what zod's serializer
 * writes.
 */
import t from 'tap';
import type { FastifySerializerCompiler } from 'fastify';
import { serializerCompiler as zodSerializerCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { fastSerializerCompiler, replyJsonSchema } from '../../src/http/serializer.js';
import { DescriptorView } from '../../schemas/descriptors.js';

interface Compared { url: string; status: number; fast: string; zod: string }

async function comparingApp(t: { teardown(fn: () => unknown): void }) {
  const compared: Compared[] = [];
  const both: FastifySerializerCompiler<unknown> = (route) => {
    const fast = fastSerializerCompiler(route);
    const slow = (zodSerializerCompiler as unknown as FastifySerializerCompiler<unknown>)(route);
    return (data: unknown) => {
      const f = fast(data);
      compared.push({ url: route.url, status: Number(route.httpStatus), fast: f, zod: slow(data) });
      return f;
    };
  };
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '2' }), serializerCompiler: both });
  await app.ready();
  t.teardown(() => app.close());
  return { app, compared };
}

t.test('every JSON reply of the workload is what zod would write', async (t) => {
  const { app, compared } = await comparingApp(t);
  const req = async (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown) => {
    const res = await app.inject({ method, url, ...(payload === undefined ? {} : { payload: payload as object }) });
    if (res.statusCode >= 400) t.fail(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.body === '' ? null : JSON.parse(res.body);
  };
  await req('GET', '/healthz');
  await req('GET', '/readyz');
  for (const [dialect, size, enable, remote] of [
    ['linux', 'KCOV_INIT_TRACE', 'KCOV_ENABLE', { cmd: 'KCOV_REMOTE_ENABLE', arg: { trace_mode: 0, area_size: 16, handles: ['0x0100000000000001'], common_handle: '0x0000000000000003' } }],
    ['openbsd', 'KIOSETBUFSIZE', 'KIOENABLE', { cmd: 'KIOREMOTEATTACH', arg: { subsystem: 0, id: 1 } }],
    ['netbsd', 'KCOV_IOC_SETBUFSIZE', 'KCOV_IOC_ENABLE', { cmd: 'KCOV_IOC_REMOTE_ATTACH', arg: { subsystem: 0, id: 1 } }],
    ['freebsd', 'KIOSETBUFSIZE', 'KIOENABLE', undefined],
  ] as const) {
    const k = `/v1/kernels/s-${dialect}`;
    await req('POST', '/v1/kernels', { name: `s-${dialect}`, dialect });
    await req('GET', k);
    const { fd } = await req('POST', `${k}/descriptors`, { tid: 1 });
    await req('GET', `${k}/descriptors/${fd}`);
    await req('POST', `${k}/descriptors/${fd}/ioctl/${size}`, { tid: 1, arg: 512 });
    await req('POST', `${k}/descriptors/${fd}/ioctl/${enable}`, { tid: 1, arg: dialect === 'linux' || dialect === 'freebsd' ? 0 : 1 });
    await req('POST', `${k}/threads/1/events`, { pcs: [1, 2, 3] });
    await req('GET', `${k}/descriptors/${fd}`);
    await req('GET', `${k}/descriptors`);
    await req('PUT', `${k}/threads/2`, { pid: 1 });
    await req('GET', `${k}/threads/2`);
    await req('GET', `${k}/threads`);
    await req('GET', `${k}/cpus`);
    await req('GET', `${k}/cpus/0`);
    if (remote !== undefined) {
      if (dialect === 'netbsd') await req('PUT', `${k}/remotes/0:1`);
      const { fd: rfd } = await req('POST', `${k}/descriptors`, { tid: 3 });
      await req('POST', `${k}/descriptors/${rfd}/ioctl/${size}`, { tid: 3, arg: 64 });
      await req('POST', `${k}/descriptors/${rfd}/ioctl/${remote.cmd}`, { tid: 3, arg: remote.arg });
      await req('GET', `${k}/descriptors/${rfd}`);
      await req('GET', `${k}/remotes`);
    }
    await req('GET', '/v1/kernels');
  }
  const routes = new Set(compared.map((c) => c.url));
  t.ok(routes.size >= 12, `replies of ${routes.size} routes compared`);
  const differ = compared.filter((c) => c.fast !== c.zod);
  t.same(differ, [], `${compared.length} replies, fast-json-stringify and zod agree`);
});

t.test('nullable fields are written as typed unions, not run-time anyOf', async (t) => {
  const js = replyJsonSchema(DescriptorView) as { definitions?: Record<string, { properties: Record<string, { type?: unknown; anyOf?: unknown }> }> };
  const props = js.definitions?.Descriptor?.properties ?? (js as unknown as { properties: Record<string, { type?: unknown }> }).properties;
  t.same(props.words!.type, ['integer', 'null']);
  t.same(props.mode!.type, ['string', 'null']);
  t.equal(replyJsonSchema(z.undefined()), undefined, 'a 204 keeps zod');
});
