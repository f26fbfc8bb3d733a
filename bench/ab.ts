/**
 * A/B experiments on ingestion: kcovd as it is (the "kcovd" side) against a
 * second kcovd with an experimental switch (the "baseline" side), same load,
 * same rounds. Not in the default run: BENCH_AB=staging npm run bench.
 *   staging  KCOV_EXPERIMENT_STAGING=1: chunks copied into a pooled staging
 *            buffer as they arrive (then once more into the area)
 */
import type { AddressInfo } from 'node:net';
import { K, pcBody, type BenchModule, type HttpCase, type Load } from './cases.js';
import type { Endpoint } from './servers.js';

const AREA_WORDS = 4 * 1024 * 1024;
const CONNS = 4;

/** The server of the B side: the same set-up as core's ingestion (tids 100.., fds in the same order). */
export async function stagingKcovd(): Promise<Endpoint> {
  process.env.KCOV_EXPERIMENT_STAGING = '1';
  const { loadConfig } = await import('../src/config.js');
  const { start } = await import('../src/server.js');
  const app = await start(loadConfig({ KCOV_NCPUS: '2', KCOV_MEMORY_LIMIT: '2G', PORT: '0', HOST: '127.0.0.1' }));
  for (let c = 0; c < CONNS; c++) {
    const tid = 100 + c;
    const { fd } = JSON.parse((await app.inject({ method: 'POST', url: `${K}/descriptors`, payload: { tid } })).body);
    await app.inject({ method: 'POST', url: `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, payload: { tid, arg: AREA_WORDS } });
    await app.inject({ method: 'POST', url: `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, payload: { tid, arg: 'pc' } });
  }
  return { origin: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

export const ab: BenchModule = {
  name: 'ab',
  async http(ctx) {
    if (process.env.BENCH_AB !== 'staging') return [];
    // core opened its ingestion descriptors first: fds 3.. for tids 100..
    const list = await ctx.call('GET', `${K}/descriptors`);
    const fds = (list.descriptors as Array<{ fd: number; owner: number }>).filter((d) => d.owner >= 100 && d.owner < 100 + CONNS).map((d) => d.fd);
    const out: HttpCase[] = [];
    for (const bytes of [64 * 1024, 512 * 1024]) {
      const body = pcBody(bytes / 8, 1);
      const perArea = Math.floor((AREA_WORDS - 1) / (bytes / 8));
      const load: Load = {
        connections: CONNS, pipelining: 1, durationMs: ctx.durationMs,
        job: (c, n) => n % (perArea + 1) === perArea
          ? { method: 'PUT', path: `${K}/descriptors/${fds[c]}/coverage/count`, headers: { 'content-type': 'application/json' }, body: '{"count":0}', extra: true }
          : { method: 'POST', path: `${K}/threads/${100 + c}/events?kind=pc`, headers: { 'content-type': 'application/octet-stream' }, body },
      };
      out.push({ name: `A/B ingest ${bytes / 1024} KiB: chunks held vs staging copy`, target: 1, kcovd: load, baseline: { server: 'ab.js#stagingKcovd', name: 'kcovd, staging buffer', load } });
    }
    return out;
  },
};
