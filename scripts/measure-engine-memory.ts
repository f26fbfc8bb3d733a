/**
 * Measures what one engine object really costs in the heap, to set the
 * constants of src/engine/kernel/costs.ts. Run with
 *   node --expose-gc dist/scripts/measure-engine-memory.js
 * Each line: many objects of one kind made in a fresh kernel, the heap and
 * ArrayBuffer growth after a full GC, divided by their number.
 */
import { Engine } from '../src/engine/engine.js';
import type { Kernel } from '../src/engine/kernel.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with node --expose-gc');

function used(): number {
  gc!();
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function measure(what: string, n: number, dialect: 'linux' | 'openbsd' | 'netbsd' | 'freebsd', make: (k: Kernel, i: number) => void): number {
  const e = new Engine({ dialect, ncpus: 1, memoryLimit: Number.MAX_SAFE_INTEGER });
  const k = e.kernel('default');
  const before = used();
  for (let i = 0; i < n; i++) make(k, i);
  const per = (used() - before) / n;
  console.log(`${what.padEnd(44)} ${per.toFixed(0).padStart(6)} bytes each (n=${n}, ${dialect})`);
  e.close();
  return per;
}

const N = 100_000;
measure('thread (ensureThread)', N, 'linux', (k, i) => k.ensureThread(i + 1));
measure('thread (ensureThread)', N, 'netbsd', (k, i) => k.ensureThread(i + 1));
measure('descriptor (open)', N, 'linux', (k) => k.open());
measure('descriptor (open)', N, 'openbsd', (k) => k.open());
measure('descriptor (open)', N, 'netbsd', (k) => k.open());
measure('linux remote (KCOV_REMOTE_ENABLE, 256 handles)', N / 256, 'linux', (k, i) => {
  const fd = k.open().fd;
  k.ioctl(fd, 'KCOV_INIT_TRACE', i + 1, 2);
  const handles = Array.from({ length: 256 }, (_, j) => `0x01000000${(i * 256 + j + 1).toString(16).padStart(8, '0')}`);
  k.ioctl(fd, 'KCOV_REMOTE_ENABLE', i + 1, { trace_mode: 'pc', area_size: 0, handles });
});
measure('openbsd remote (register)', N, 'openbsd', (k, i) => k.remotes.register(`1:${i}`));
measure('waiter (kernel.watch)', N, 'linux', (k) => {
  k.watch(() => {});
});
measure('guard (KCOV_UNIQUE_ENABLE, distinct PCs)', N * 10, 'linux', (k, i) => {
  if (i === 0) {
    const fd = k.open().fd;
    k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 4096);
    k.ioctl(fd, 'KCOV_UNIQUE_ENABLE', 1, 64);
  }
  k.guardIndex(i * 8, 0xffff);
});

// A long-poll waiter as the coverage route makes it: timer, promise, closures, subscription, 'close' listener.
{
  const { LongPoll } = await import('../src/http/longpoll.js');
  const { EventEmitter } = await import('node:events');
  const e = new Engine({ dialect: 'linux', ncpus: 1, memoryLimit: Number.MAX_SAFE_INTEGER });
  const k = e.kernel('default');
  const n = 20_000;
  const fds: number[] = [];
  for (let i = 0; i < n; i++) {
    const fd = k.open().fd;
    k.ioctl(fd, 'KCOV_INIT_TRACE', 1, 2);
    fds.push(fd);
  }
  const lp = new LongPoll(3_600_000);
  const sockets = fds.map(() => new EventEmitter());
  const before = used();
  const waits = fds.map((fd, i) => lp.waitForChange(e, 'default', fd, 3_600_000, undefined, sockets[i]!));
  const per = (used() - before) / n;
  console.log(`${'long-poll waiter (LongPoll.waitForChange)'.padEnd(44)} ${per.toFixed(0).padStart(6)} bytes each (n=${n}, linux)`);
  lp.close();
  await Promise.all(waits);
  e.close();
}
