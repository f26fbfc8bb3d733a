/** KCOV_SOCKET (Additions): the server also listens on a Unix domain socket, with the same routes. */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Client } from 'undici';

const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));

t.test('KCOV_SOCKET: routes answer on the socket, the file is removed at exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kcovd-sock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kcovd.sock');
  const child = spawn(process.execPath, [SERVER], {
    env: { ...process.env, PORT: '0', LOG_LEVEL: 'info', KCOV_NCPUS: '1', KCOV_TOKEN: '', KCOV_SOCKET: path },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
  t.teardown(() => {
    clearTimeout(kill);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('listening on the Unix socket')) resolve();
    });
    child.once('exit', () => reject(new Error(`exited before listening: ${out}`)));
  });
  const client = new Client('http://localhost', { socketPath: path });
  t.teardown(() => client.destroy());
  const health = await client.request({ method: 'GET', path: '/healthz' });
  t.equal(health.statusCode, 200);
  t.type(health.headers['kcovd-boot'], 'string', 'the socket serves the same app (boot id hook)');
  await health.body.text();
  const opened = await client.request({
    method: 'POST',
    path: '/v1/kernels/default/descriptors',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ tid: 1 }),
  });
  t.equal(opened.statusCode, 201);
  t.equal((await opened.body.json() as { fd: number }).fd, 3);
  await client.close();
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'exit 0');
  t.notOk(existsSync(path), 'socket file removed');
});
