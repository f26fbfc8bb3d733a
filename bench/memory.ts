/**
 * RSS with 1000 descriptors of 64Ki words each, every area filled through the
 * binary events route (so every page is touched), in a process of its own.
 * Reported to the parent over IPC.
 */
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';

const N = 1000;
const WORDS = 64 * 1024;
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '1', LOG_LEVEL: 'silent' }) });
await app.ready();
gc();
const before = process.memoryUsage().rss;
const body = Buffer.alloc((WORDS - 1) * 8, 0x5a);
const K = '/v1/kernels/default';
for (let i = 0; i < N; i++) {
  const tid = 1000 + i;
  const open = await app.inject({ method: 'POST', url: `${K}/descriptors`, payload: { tid } });
  const fd = JSON.parse(open.body).fd as number;
  await app.inject({ method: 'POST', url: `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, payload: { tid, arg: WORDS } });
  await app.inject({ method: 'POST', url: `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, payload: { tid, arg: 'pc' } });
  const ev = await app.inject({
    method: 'POST', url: `${K}/threads/${tid}/events?kind=pc`, headers: { 'content-type': 'application/octet-stream' }, payload: body,
  });
  if (ev.statusCode !== 200 || JSON.parse(ev.body).accepted !== WORDS - 1) throw new Error(`fill ${i}: ${ev.statusCode} ${ev.body}`);
}
gc();
gc();
const rss = process.memoryUsage().rss;
const areas = N * WORDS * 8;
const bound = 1.1 * areas + 64 * 1024 * 1024;
const list = JSON.parse((await app.inject({ method: 'GET', url: '/v1/kernels' })).body);
const MiB = (x: number) => `${(x / 1024 / 1024).toFixed(0)} MiB`;
const row = `| memory: ${N} descriptors × 64Ki words, every area filled | RSS ${MiB(rss)} | 1.1 × Σ areas + 64 MiB | ${MiB(bound)} | **${(rss / bound).toFixed(2)}** of bound | RSS before areas ${MiB(before)} | ≤ 1.00 ${rss <= bound ? '✓' : '✗'} |`;
const line = `memory: Σ areas ${MiB(areas)}, RSS ${MiB(rss)} (${MiB(before)} before any area), bound ${MiB(bound)}; GET /v1/kernels memory = ${JSON.stringify(list.memory ?? list.kernels?.[0]?.memory)}`;
await app.close();
process.send?.({ row, line });
