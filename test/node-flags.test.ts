/**
 * The node flags of src/node-flags.ts are what `npm start` and the container image pass, and
 * the server says so at start when they are missing.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { NODE_FLAGS } from '../src/node-flags.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER = fileURLToPath(new URL('../src/server.js', import.meta.url));

t.test('npm start and the Dockerfile CMD pass NODE_FLAGS before the server', async (t) => {
  t.ok(NODE_FLAGS.length > 0);
  const start = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { scripts: Record<string, string> }).scripts.start!;
  t.match(start, new RegExp(`node ${NODE_FLAGS.join(' ')} dist/src/server\\.js$`), `npm start: ${start}`);
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(`${ROOT}Dockerfile`, 'utf8'));
  t.ok(cmd, 'the Dockerfile has a CMD');
  t.same(JSON.parse(cmd![1]!), ['node', ...NODE_FLAGS, 'dist/src/server.js'], 'Dockerfile CMD');
});

async function startupLog(flags: readonly string[]): Promise<string> {
  const child = spawn(process.execPath, [...flags, SERVER], {
    env: { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no start: ${out}`)), 20_000);
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (/Server listening/.test(out)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    // The flag check is logged right after the listeners are up.
    await new Promise((r) => setTimeout(r, 300));
    return out;
  } finally {
    child.kill('SIGKILL');
  }
}

t.test('the server logs the flags it runs without, and nothing when it has them', async (t) => {
  const bare = await startupLog([]);
  t.match(bare, /node runs without the flags npm start passes/, 'without them');
  t.match(bare, NODE_FLAGS[0]!, 'names them');
  const withFlags = await startupLog(NODE_FLAGS);
  t.match(withFlags, /Server listening/);
  t.notMatch(withFlags, /node runs without the flags/, 'with them');
});
