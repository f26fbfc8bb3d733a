/**
 * The cases of issue #14: small operations against Fastify hello world,
 * binary ingestion against a raw node:http sink (TCP and Unix socket), the
 * binary snapshot against a raw static Buffer; in process, the engine against
 * TypedArray.set, the snapshot encoders, and memory.
 */
import { fileURLToPath } from 'node:url';
import { childResult, K, pcBody, type BenchModule, type HttpCase, type Job, type Load, type MicroRow } from './cases.js';
import { engineBenchIn, snapshotCodecBench } from './micro.js';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ONLY = process.env.BENCH_ONLY;

export const core: BenchModule = {
  name: 'core',
  async http(ctx) {
    const D = ctx.durationMs;
    const INGEST_CONNS = 4;
    const AREA_WORDS = 4 * 1024 * 1024; // 32 MiB a connection
    const ingestFds: number[] = [];
    for (let c = 0; c < INGEST_CONNS; c++) ingestFds.push(await ctx.tracedFd(100 + c, AREA_WORDS));
    const SMALL_CONNS = 4;
    const SMALL_PIPE = 4;
    const smallFds: number[] = [];
    for (let c = 0; c < SMALL_CONNS; c++) smallFds.push(await ctx.tracedFd(200 + c, 1024 * 1024));
    const jsonFd = await ctx.tracedFd(300, 64);
    await ctx.call('POST', `${K}/threads/300/events?kind=pc`, pcBody(32, 3));
    const SNAP_WORDS = 512 * 1024;
    const snapFd = await ctx.tracedFd(301, SNAP_WORDS);
    await ctx.call('POST', `${K}/threads/301/events?kind=pc`, pcBody(SNAP_WORDS - 1, 4));

    const octet = { 'content-type': 'application/octet-stream' };
    const jsonH = { 'content-type': 'application/json' };
    const countReset = (fd: number): Job & { extra: boolean } =>
      ({ method: 'PUT', path: `${K}/descriptors/${fd}/coverage/count`, headers: jsonH, body: '{"count":0}', extra: true });

    const ingest = (bytes: number, via: 'tcp' | 'unix', fds = ingestFds): HttpCase => {
      const body = pcBody(bytes / 8, 1);
      const perArea = Math.floor((AREA_WORDS - 1) / (bytes / 8));
      const load = (job: Load['job']): Load => ({ connections: INGEST_CONNS, pipelining: 1, durationMs: D, job });
      return {
        name: `binary PC ingest ${bytes / 1024} KiB${via === 'unix' ? ', Unix socket' : ''}`,
        target: 0.9,
        via,
        // Every connection has its own area; its count goes back to 0 before the area fills, so nothing is dropped.
        kcovd: load((c, n) => n % (perArea + 1) === perArea
          ? countReset(fds[c]!)
          : { method: 'POST', path: `${K}/threads/${100 + c}/events?kind=pc`, headers: octet, body }),
        baseline: {
          server: 'raw-sink', via, name: `node:http copy sink${via === 'unix' ? ', Unix socket' : ''}`,
          load: load(() => ({ method: 'POST', path: `/events?area=${AREA_WORDS * 8}`, headers: octet, body })),
        },
      };
    };
    const small = (name: string, job: Load['job']): HttpCase => {
      const load = (j: Load['job']): Load => ({ connections: SMALL_CONNS, pipelining: SMALL_PIPE, durationMs: D, job: j });
      return {
        name,
        target: 0.75,
        kcovd: load(job),
        baseline: { server: 'fastify', name: 'Fastify hello world', load: load(() => ({ method: 'GET', path: '/' })) },
      };
    };
    const batch = pcBody(200, 2);
    const jsonBatch = JSON.stringify({ pcs: Array.from({ length: 200 }, (_, i) => 0x81000000 + i * 4) });
    // Resets every 5000 requests keep the 1Mi-word areas from filling (nothing dropped).
    const refill = (c: number, n: number, job: Job): Job & { extra?: boolean } => (n % 5000 === 4999 ? countReset(smallFds[c]!) : job);
    // The same ingestion on a kcovd with no cover union (KCOV_COVER=off): what the union's fold costs.
    const offFds: number[] = [];
    const noCover = (bytes: number): HttpCase => ({
      ...ingest(bytes, 'tcp', offFds),
      name: `binary PC ingest ${bytes / 1024} KiB, KCOV_COVER=off`,
      target: 0,
      info: true,
      subject: {
        server: 'kcovd-nocover', name: 'kcovd, no union',
        async setup(sub) {
          if (offFds.length > 0) return;
          for (let c = 0; c < INGEST_CONNS; c++) offFds.push(await sub.tracedFd(100 + c, AREA_WORDS));
        },
      },
    });
    return [
      ingest(64 * 1024, 'tcp'),
      ingest(512 * 1024, 'tcp'),
      noCover(64 * 1024),
      noCover(512 * 1024),
      ingest(64 * 1024, 'unix'),
      ingest(512 * 1024, 'unix'),
      small('GET descriptor', (c) => ({ method: 'GET', path: `${K}/descriptors/${smallFds[c]}` })),
      small('ioctl KCOV_RESET_TRACE', (c) => ({
        method: 'POST', path: `${K}/descriptors/${smallFds[c]}/ioctl/KCOV_RESET_TRACE`, headers: jsonH, body: `{"tid":${200 + c},"arg":0}`,
      })),
      small('PUT coverage/count', (c) => ({ ...countReset(smallFds[c]!), extra: false })),
      small('JSON batch of 200 PCs', (c, n) => refill(c, n, { method: 'POST', path: `${K}/threads/${200 + c}/events`, headers: jsonH, body: jsonBatch })),
      small('binary batch of 200 PCs', (c, n) => refill(c, n, { method: 'POST', path: `${K}/threads/${200 + c}/events?kind=pc`, headers: octet, body: batch })),
      {
        // Not a target: how far Fastify itself is from its hello world once a request has a JSON body.
        ...small('floor: Fastify PUT with a JSON body', () => ({ method: 'PUT', path: '/x/3/coverage', headers: jsonH, body: '{"count":0}' })),
        target: 0,
        subject: { server: 'fastify', name: 'Fastify PUT' },
      },
      {
        // Not a target: what 10 µs of route code, any code, costs in these ratios on this machine.
        ...small('floor: Fastify hello world after 10 µs of work', () => ({ method: 'GET', path: '/work/10' })),
        target: 0,
        subject: { server: 'fastify', name: 'Fastify + 10 µs' },
      },
      small('JSON snapshot of 32 PCs', () => ({ method: 'GET', path: `${K}/descriptors/${jsonFd}/coverage`, headers: { accept: 'application/json' } })),
      {
        name: 'binary snapshot 512Ki words',
        target: 0.9,
        kcovd: { connections: 2, pipelining: 1, durationMs: D, job: () => ({ method: 'GET', path: `${K}/descriptors/${snapFd}/coverage`, headers: { accept: 'application/octet-stream' } }) },
        baseline: { server: 'raw-static', name: 'node:http static Buffer', load: { connections: 2, pipelining: 1, durationMs: D, job: () => ({ method: 'GET', path: `/?size=${SNAP_WORDS * 8}` }) } },
      },
    ];
  },
  async micro(rounds) {
    const rows: MicroRow[] = [];
    if (ONLY === undefined || 'engine'.includes(ONLY)) for (const cover of [true, false]) rows.push(...(await engineBenchIn(rounds, cover)));
    if (ONLY === undefined || 'snapshot codecs'.includes(ONLY)) rows.push(...snapshotCodecBench(rounds));
    if (ONLY === undefined || 'memory'.includes(ONLY)) {
      const m = await childResult<{ line: string; row: string }>(`${HERE}memory.js`, [], ['--expose-gc']);
      rows.push({ name: 'memory', value: '', baseline: '', baselineValue: '', ratio: NaN, min: NaN, max: NaN, target: '', raw: m.row, note: m.line });
    }
    return rows;
  },
};
