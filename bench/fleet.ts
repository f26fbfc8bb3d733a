/**
 * Cumulative coverage and the fleet in `npm run bench`:
 *  - ?new=true&reset=true against a plain binary ?reset=true snapshot of a
 *    512Ki-word area when nothing in it is new (req/s and bytes on the wire);
 *  - binary PC ingestion with the fleet on (a real redis-server) against off;
 *  - in-process: ingestion with count resets, the cover union on against off
 *    (its gate stubbed out), to show what lazy folding costs.
 * Rounds alternate the two sides; medians of per-round ratios.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { run, type Load } from './driver.js';
import { cpuOf, type BenchModule, type MicroRow } from './cases.js';
import { Engine } from '../src/engine/engine.js';
import { installed, RedisServer } from '../test/fleet/servers.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const K = '/v1/kernels/default';

interface Server { origin: string; child: ChildProcess }

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function spawnKcovd(fleetUrl?: string): Promise<Server> {
  const child = fork(`${HERE}fleet-server.js`, fleetUrl === undefined ? [] : [fleetUrl], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m: { port: number }) => resolve(m.port));
    child.once('exit', (code) => reject(new Error(`fleet-server exited (${code})`)));
  });
  return { origin: `http://127.0.0.1:${port}`, child };
}


/** run() plus the server's CPU µs per counted request. */
async function measured(s: Server, load: Load): Promise<{ rps: number; bytesPerSec: number; cpu: number }> {
  const c0 = await cpuOf(s);
  const t0 = performance.now();
  const r = await run({ origin: s.origin }, load);
  const c1 = await cpuOf(s);
  return { rps: r.rps, bytesPerSec: r.bytesPerSec, cpu: (c1 - c0) / Math.max(1, (r.rps * (performance.now() - t0)) / 1000) };
}

function stop(s: Server): Promise<void> {
  return new Promise((resolve) => {
    s.child.once('exit', () => resolve());
    s.child.disconnect();
  });
}

async function call(origin: string, method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown): Promise<string> {
  const isBuf = Buffer.isBuffer(body);
  const res = await request(origin + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': isBuf ? 'application/octet-stream' : 'application/json' },
    body: body === undefined ? undefined : isBuf ? body : JSON.stringify(body),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${path}: ${res.statusCode} ${text}`);
  return text;
}

async function tracedFd(origin: string, tid: number, words: number): Promise<number> {
  const { fd } = JSON.parse(await call(origin, 'POST', `${K}/descriptors`, { tid }));
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid, arg: words });
  await call(origin, 'POST', `${K}/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid, arg: 'pc' });
  return fd;
}

function pcBody(records: number, seed: number): Buffer {
  const b = Buffer.alloc(records * 8);
  for (let i = 0; i < records; i++) {
    b.writeUInt32LE((0x81000000 + seed * 0x100000 + i * 4) >>> 0, i * 8);
    b.writeUInt32LE(0xffffffff, i * 8 + 4);
  }
  return b;
}

async function startRedis(): Promise<{ url: string; stop: () => Promise<void> } | null> {
  if (!installed('redis-server')) return null;
  const r = await RedisServer.create();
  await r.start();
  return { url: r.url, stop: () => r.destroy() };
}

/** Rounds of a against b (alternating order); medians. */
type Sample = { rps: number; bytesPerSec: number; cpu: number };
async function versus(rounds: number, a: () => Promise<Sample>, b: () => Promise<Sample>) {
  const ra: number[] = [], rb: number[] = [], ratio: number[] = [], ba: number[] = [], bb: number[] = [], cpu: number[] = [], ca: number[] = [], cb: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    let x: Sample = { rps: 0, bytesPerSec: 0, cpu: 0 }, y: Sample = { rps: 0, bytesPerSec: 0, cpu: 0 };
    if (round % 2 === 0) {
      x = await a();
      y = await b();
    } else {
      y = await b();
      x = await a();
    }
    if (round === 0) continue; // warm-up
    ra.push(x.rps);
    rb.push(y.rps);
    ratio.push(x.rps / y.rps);
    ba.push(x.bytesPerSec / Math.max(1, x.rps));
    bb.push(y.bytesPerSec / Math.max(1, y.rps));
    cpu.push(y.cpu / x.cpu);
    ca.push(x.cpu);
    cb.push(y.cpu);
  }
  return {
    a: median(ra), b: median(rb), ratio: median(ratio), min: Math.min(...ratio), max: Math.max(...ratio), bytesA: median(ba), bytesB: median(bb),
    cpuRatio: median(cpu), cpuA: median(ca), cpuB: median(cb),
  };
}

export async function fleetBench(rounds: number, durationMs: number): Promise<MicroRow[]> {
  const rows: MicroRow[] = [];
  const plain = await spawnKcovd();
  const kc = plain.origin;

  // ---- ?new=true&reset=true against ?reset=true, nothing new, 512Ki words ----
  const WORDS = 512 * 1024;
  const CONNS = 2;
  const fds: number[] = [];
  for (let c = 0; c < CONNS; c++) {
    const fd = await tracedFd(kc, 400 + c, WORDS);
    await call(kc, 'POST', `${K}/threads/${400 + c}/events?kind=pc`, pcBody(WORDS - 1, c));
    fds.push(fd);
  }
  await call(kc, 'GET', `${K}/cover?format=binary`); // every PC of the areas is in the union: nothing will be new
  // Each counted read is preceded by `cover[0] = n`, which shows the same records again (as in real kcov).
  const refill = (c: number) => ({ method: 'PUT' as const, path: `${K}/descriptors/${fds[c]}/coverage/count`, headers: { 'content-type': 'application/json' }, body: `{"count":${WORDS - 1}}`, extra: true });
  const reads = (query: string): Load => ({
    connections: CONNS, pipelining: 1, durationMs,
    job: (c, n) => n % 2 === 0 ? refill(c) : { method: 'GET', path: `${K}/descriptors/${fds[c]}/coverage?${query}`, headers: { accept: 'application/octet-stream' } },
  });
  const nv = await versus(rounds, () => measured(plain, reads('new=true&reset=true')), () => measured(plain, reads('reset=true')));
  rows.push({
    name: '?new=true&reset=true, nothing new, 512Ki words',
    value: `${nv.a.toFixed(0)} req/s, ${nv.bytesA.toFixed(0)} B/reply, ${nv.cpuA.toFixed(0)} µs CPU/req`,
    baseline: 'binary ?reset=true snapshot',
    baselineValue: `${nv.b.toFixed(0)} req/s, ${nv.bytesB.toFixed(0)} B/reply, ${nv.cpuB.toFixed(0)} µs CPU/req`,
    ratio: nv.ratio, min: nv.min, max: nv.max,
    target: `bytes ${(nv.bytesB / Math.max(1, nv.bytesA)).toFixed(0)}× fewer`,
  });

  // ---- ingestion with the fleet on against off ----
  const redis = await startRedis();
  if (redis === null) {
    rows.push({ name: 'binary PC ingest 512 KiB, fleet on', value: 'skipped: no redis-server', baseline: 'fleet off', baselineValue: '-', ratio: NaN, min: NaN, max: NaN, target: '≥ 0.9' });
  } else {
    const fleet = await spawnKcovd(redis.url);
    const ING = 4;
    const AREA = 4 * 1024 * 1024;
    const body = pcBody(64 * 1024, 9);
    const perArea = Math.floor((AREA - 1) / (64 * 1024));
    const setup = async (origin: string) => {
      const out: number[] = [];
      for (let c = 0; c < ING; c++) out.push(await tracedFd(origin, 500 + c, AREA));
      return out;
    };
    const pfds = await setup(kc);
    const ffds = await setup(fleet.origin);
    const ingest = (fdsOf: number[]): Load => ({
      connections: ING, pipelining: 1, durationMs,
      job: (c, n) => n % (perArea + 1) === perArea
        ? { method: 'PUT', path: `${K}/descriptors/${fdsOf[c]}/coverage/count`, headers: { 'content-type': 'application/json' }, body: '{"count":0}', extra: true }
        : { method: 'POST', path: `${K}/threads/${500 + c}/events?kind=pc`, headers: { 'content-type': 'application/octet-stream' }, body },
    });
    const fv = await versus(rounds, () => measured(fleet, ingest(ffds)), () => measured(plain, ingest(pfds)));
    rows.push({
      name: 'binary PC ingest 512 KiB, fleet on (redis-server)',
      value: `${fv.a.toFixed(0)} req/s (${(fv.a / 2).toFixed(0)} MiB/s), ${fv.cpuA.toFixed(0)} µs CPU/req`,
      baseline: 'the same, fleet off',
      baselineValue: `${fv.b.toFixed(0)} req/s, ${fv.cpuB.toFixed(0)} µs CPU/req (CPU ratio ${fv.cpuRatio.toFixed(2)}×)`,
      ratio: fv.ratio, min: fv.min, max: fv.max,
      target: `≥ 0.9 ${fv.ratio >= 0.9 ? '✓' : '✗'}`,
    });
    await stop(fleet);
    await redis.stop();
  }
  await stop(plain);

  rows.push(unionOnOff(rounds));
  return rows;
}

/** In-process: 64 KiB batches into a 4Mi-word area, count reset when full; "off" is an engine without unions (KCOV_COVER=off). */
function unionOnOff(rounds: number): MicroRow {
  const WORDS = 4 * 1024 * 1024;
  const body = pcBody(8192, 3);
  const setup = (on: boolean) => {
    const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: 1024 ** 3, cover: on });
    const k = e.kernel('default');
    const d = k.open(1);
    k.ioctl(d.fd, 'KCOV_INIT_TRACE', 1, WORDS);
    k.ioctl(d.fd, 'KCOV_ENABLE', 1, 'pc');
    return () => {
      for (let i = 0; i < 511; i++) k.eventsBinary(1, 'pc', [body], body.length);
      k.setCount(d, 0);
    };
  };
  const on = setup(true), off = setup(false);
  // CPU time of this process (ms): steadier than wall time on a shared machine.
  const cpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const time = (f: () => void) => {
    const t = cpuMs();
    for (let i = 0; i < 4; i++) f();
    return (cpuMs() - t) / 4;
  };
  const ratios: number[] = [], tOn: number[] = [], tOff: number[] = [];
  for (let r = 0; r <= rounds; r++) {
    const a = time(on), b = time(off);
    if (r === 0) continue;
    tOn.push(a);
    tOff.push(b);
    ratios.push(b / a);
  }
  const mib = (511 * body.length) / 1024 / 1024;
  return {
    name: 'engine ingest with count resets, cover union on',
    value: `${(mib / (median(tOn) / 1000)).toFixed(0)} MiB/s`,
    baseline: 'union off (KCOV_COVER=off)',
    baselineValue: `${(mib / (median(tOff) / 1000)).toFixed(0)} MiB/s`,
    ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios),
    // Information: the fold's cost per record against a copy's (the same PCs every batch).
    target: 'information',
  };
}

/** The module npm run bench registers: servers of its own (and a Redis), so it runs as in-process rows. */
export const fleet: BenchModule = {
  name: 'fleet',
  async micro(rounds) {
    const only = process.env.BENCH_ONLY;
    if (only !== undefined && !'fleet'.includes(only)) return [];
    return fleetBench(rounds, Number(process.env.BENCH_MS ?? 1000));
  },
};
