/** `kcovd/client` is the client alone: importing it loads no Fastify, swagger or prom-client. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Packages in the CommonJS module cache after a fresh node imports `entry` (by package name, through `exports`). */
async function packagesLoadedBy(entry: string): Promise<string[]> {
  const script = `
    import { createRequire } from 'node:module';
    const m = await import(${JSON.stringify(entry)});
    const names = new Set();
    for (const k of Object.keys(createRequire(import.meta.url).cache)) {
      const at = k.lastIndexOf('node_modules/');
      if (at < 0) continue;
      const parts = k.slice(at + 13).split('/');
      names.add(parts[0].startsWith('@') ? parts[0] + '/' + parts[1] : parts[0]);
    }
    console.log(JSON.stringify({ exports: Object.keys(m).sort(), packages: [...names].sort() }));`;
  // Without the test runner's NODE_OPTIONS (its loader would count as loaded packages).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !k.startsWith('TAP')));
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8', env });
  const r = JSON.parse(stdout) as { exports: string[]; packages: string[] };
  t.ok(r.exports.length > 0, `${entry} exports something`);
  return r.packages;
}

const SERVER_PACKAGES = ['fastify', '@fastify/swagger', '@fastify/swagger-ui', 'prom-client', 'fastify-type-provider-zod'];

t.test('kcovd/client loads undici and none of the server packages', async (t) => {
  const pkgs = await packagesLoadedBy('kcovd/client');
  t.ok(pkgs.includes('undici'), `undici is loaded (the check sees packages): ${pkgs.join(', ')}`);
  for (const p of SERVER_PACKAGES) t.notOk(pkgs.includes(p), `${p} is not loaded`);
});

t.test('kcovd (the service entry) does load them: the check can tell', async (t) => {
  const pkgs = await packagesLoadedBy('kcovd');
  t.ok(pkgs.includes('fastify'), 'fastify');
  t.ok(pkgs.includes('prom-client'), 'prom-client');
});

t.test('kcovd/wire loads none of the dependencies', async (t) => {
  const deps = Object.keys((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
  t.ok(deps.includes('undici'));
  t.same((await packagesLoadedBy('kcovd/wire')).filter((p) => deps.includes(p)), []);
});
