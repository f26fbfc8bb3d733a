/**
 * Rejecting a 2 MiB JSON body of invalid list elements against accepting a
 * valid JSON body of the same size, on the same kcovd server: the ratio of
 * their throughputs. Target: rejecting costs at most 2x accepting (ratio
 * >= 0.5). Before validation stopped at the first issues, one such body kept
 * the event loop for minutes and ran the heap out of memory.
 */
import type { BenchModule } from './cases.js';
import type { Load } from './driver.js';

export interface RejectCase {
  name: string;
  target: number;
  kcovd: Load;
  baseline: { server: 'kcovd'; load: Load; name: string };
}

const MiB = 1024 * 1024;
const K = '/v1/kernels/default';

/** `{"cmps":[{},{},…]}` of about 2 MiB: every element fails CmpEvent. */
export function invalidBody(bytes = 2 * MiB): string {
  return `{"cmps":[${Array(Math.floor((bytes - 12) / 3)).fill('{}').join(',')}]}`;
}

/** `{"pcs":["0x…",…]}` of about `bytes`: distinct kernel-looking PCs. */
export function validBody(bytes = 2 * MiB): { body: string; records: number } {
  const parts: string[] = [];
  let len = 10;
  for (let i = 0; len < bytes; i++) {
    const s = `"0xffffffff${(0x81000000 + i * 4).toString(16)}"`;
    parts.push(s);
    len += s.length + 1;
  }
  return { body: `{"pcs":[${parts.join(',')}]}`, records: parts.length };
}

/**
 * The case: `fd` is a PC descriptor of `areaWords` words enabled for `tid`;
 * its count is reset before the valid batches fill it, so nothing is dropped.
 */
export function rejectCases(opts: { fd: number; tid: number; areaWords: number; durationMs: number }): RejectCase[] {
  const bad = invalidBody();
  const { body: good, records } = validBody(bad.length);
  const perArea = Math.floor((opts.areaWords - 1) / records);
  const json = { 'content-type': 'application/json' };
  const load = (job: Load['job']): Load => ({ connections: 2, pipelining: 1, durationMs: opts.durationMs, job });
  return [{
    name: 'reject 2 MiB invalid JSON body',
    target: 0.5,
    kcovd: load(() => ({ method: 'POST', path: `${K}/threads/${opts.tid}/events`, headers: json, body: bad })),
    baseline: {
      server: 'kcovd',
      name: 'accept 2 MiB valid JSON body',
      load: load((_c, n) => n % (perArea + 1) === perArea
        ? { method: 'PUT', path: `${K}/descriptors/${opts.fd}/coverage/count`, headers: json, body: '{"count":0}', extra: true }
        : { method: 'POST', path: `${K}/threads/${opts.tid}/events`, headers: json, body: good }),
    },
  }];
}

/** The module npm run bench registers: one descriptor of its own on the default kernel. */
export const reject: BenchModule = {
  name: 'reject',
  async http(ctx) {
    const words = 4 * 1024 * 1024;
    return rejectCases({ fd: await ctx.tracedFd(400, words), tid: 400, areaWords: words, durationMs: ctx.durationMs });
  },
};
