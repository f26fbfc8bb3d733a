/**
 * Graceful shutdown of the real server process: under load, SIGTERM must let
 * every request the server accepted finish and reach its client (a long-poll
 * in flight is answered at once), then the process exits 0. "Accepted" is read
 * from the server's own structured log: every request id it logged as incoming
 * must be logged as completed and must have reached the client with the same
 * status. Bounded: about a second of load, ten seconds at most for the exit.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Pool } from 'undici';

const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));

interface LogLine {
  msg?: string;
  reqId?: string;
  res?: { statusCode?: number };
  signal?: string;
}

t.test('SIGTERM under load: every accepted request is answered, exit 0', async (t) => {
  const child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', KCOV_LOG_REQUESTS: '1', KCOV_NCPUS: '2', KCOV_TOKEN: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const kill = setTimeout(() => child.kill('SIGKILL'), 20_000);
  t.teardown(() => {
    clearTimeout(kill);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));

  const logs: LogLine[] = [];
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (line) => {
      let l: LogLine;
      try {
        l = JSON.parse(line);
      } catch {
        return;
      }
      logs.push(l);
      const m = /listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(l.msg ?? '');
      if (m !== null) resolve(Number(m[1]));
    });
    child.once('exit', () => reject(new Error(`server exited before listening: ${stderr}`)));
  });
  const linesDone = new Promise<void>((resolve) => lines.once('close', resolve));

  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 8 });
  t.teardown(() => pool.destroy());
  const post = (path: string, body: object) =>
    pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.body.json() as Promise<any>);
  const fd = (await post('/v1/kernels/default/descriptors', { tid: 1 })).fd;
  await post(`/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_INIT_TRACE`, { tid: 1, arg: 1 << 16 });
  await post(`/v1/kernels/default/descriptors/${fd}/ioctl/KCOV_ENABLE`, { tid: 1, arg: 0 });
  // A descriptor nobody writes: its long-poll waits until shutdown answers it.
  const quiet = (await post('/v1/kernels/default/descriptors', { tid: 2 })).fd;
  await post(`/v1/kernels/default/descriptors/${quiet}/ioctl/KCOV_INIT_TRACE`, { tid: 2, arg: 64 });

  // Every response the client got, by the request id it sent.
  const answered = new Map<string, number>();
  let errors = 0;
  let stop = false;
  const worker = async (w: number) => {
    for (let n = 0; !stop; n++) {
      const id = `w${w}-${n}`;
      try {
        const res = await pool.request({
          method: 'POST',
          path: '/v1/kernels/default/threads/1/events',
          headers: { 'content-type': 'application/json', 'x-request-id': id },
          body: JSON.stringify({ pcs: [w * 1_000_000 + n] }),
        });
        await res.body.arrayBuffer();
        answered.set(id, res.statusCode);
        if (res.statusCode === 503) return; // draining: this client goes away
      } catch {
        errors++; // refused or closed before the server took it: never logged as incoming
        return;
      }
    }
  };
  const workers = Array.from({ length: 6 }, (_, w) => worker(w));
  const pollStarted = Date.now();
  const poll = pool.request({ method: 'GET', path: `/v1/kernels/default/descriptors/${quiet}/coverage?wait=15000&since=0`, headers: { 'x-request-id': 'poll' } })
    .then(async (r) => {
      await r.body.arrayBuffer();
      answered.set('poll', r.statusCode);
      return Date.now() - pollStarted;
    });

  await new Promise((r) => setTimeout(r, 600));
  t.ok(answered.size > 10, `load is running (${answered.size} answered)`);
  const signalled = Date.now();
  child.kill('SIGTERM');
  const code = await exited;
  stop = true;
  await Promise.all(workers);
  const pollMs = await poll.catch(() => -1);
  const signalledAfter = signalled - pollStarted;
  await linesDone;

  t.equal(code, 0, `exit code 0 ${stderr}`);
  t.equal(answered.get('poll'), 200, 'the long-poll in flight was answered');
  t.ok(pollMs >= signalledAfter && pollMs < signalledAfter + 1000, `... at SIGTERM, not at its 15 s timeout (${pollMs - signalledAfter} ms after it)`);
  t.ok(logs.some((l) => l.signal === 'SIGTERM' && l.msg === 'draining'), 'logged the drain');
  t.ok(logs.some((l) => l.msg === 'closed'), 'logged the close');

  const incoming = new Set(logs.filter((l) => l.msg === 'incoming request').map((l) => l.reqId!));
  const completed = new Map(logs.filter((l) => l.msg === 'request completed').map((l) => [l.reqId!, l.res?.statusCode]));
  let unanswered = 0, mismatched = 0, loadSeen = 0;
  for (const id of incoming) {
    if (!/^w\d+-\d+$|^poll$/.test(id)) continue;
    loadSeen++;
    if (!completed.has(id) || !answered.has(id)) unanswered++;
    else if (answered.get(id) !== completed.get(id)) mismatched++;
  }
  const by503 = [...answered.values()].filter((s) => s === 503).length;
  t.comment(`${answered.size} answered (${by503} with 503 while draining), ${errors} refused after the close, ${loadSeen} logged by the server`);
  t.ok(loadSeen > 10, `the server took ${loadSeen} load requests (${errors} client errors after the close)`);
  t.equal(unanswered, 0, 'every request the server accepted reached its client');
  t.equal(mismatched, 0, 'with the status the server logged');
  for (const [id, status] of answered) {
    if (status !== 200 && status !== 503) t.fail(`${id}: unexpected status ${status}`);
  }
});
