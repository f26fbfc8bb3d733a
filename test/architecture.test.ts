/**
 * The layering, checked on the source: each folder may import only the
 * folders and packages listed for it. Imports are read with TypeScript's own
 * pre-processor (static, type-only, re-exports and dynamic import() alike).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A layer: where its files live, which layers and packages its files may import. */
interface Layer {
  readonly name: string;
  readonly paths: readonly string[];
  readonly layers: readonly string[];
  /** Package names (node: builtins are always allowed). */
  readonly packages: readonly string[];
}

export const LAYERS: readonly Layer[] = [
  // What the engine, the client and the CLI share: nothing of the project, no packages.
  { name: 'wire', paths: ['src/wire/'], layers: ['wire'], packages: [] },
  // The kcov model: no HTTP, no schemas, no client.
  { name: 'engine', paths: ['src/engine/'], layers: ['engine', 'wire'], packages: [] },
  { name: 'schemas', paths: ['schemas/'], layers: ['schemas', 'wire'], packages: ['zod'] },
  // What `kcovd/client` loads: no engine, no HTTP server.
  { name: 'client', paths: ['src/client/'], layers: ['client', 'wire', 'schemas'], packages: ['undici', 'zod'] },
];

export interface Import {
  readonly from: string;
  readonly spec: string;
}

/** The import specifiers of one TypeScript source. */
export function importsOf(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
}

function layerOf(file: string): Layer | undefined {
  return LAYERS.find((l) => l.paths.some((p) => file.startsWith(p)));
}

function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

/** One line per import a layer does not allow; files are repository-relative paths. */
export function violations(imports: readonly Import[]): string[] {
  const out: string[] = [];
  for (const { from, spec } of imports) {
    const layer = layerOf(from);
    if (layer === undefined) continue;
    if (spec.startsWith('.')) {
      const target = relative(ROOT, resolve(ROOT, dirname(from), spec)).split('\\').join('/');
      const to = layerOf(target);
      if (to === undefined || !layer.layers.includes(to.name)) {
        out.push(`${from}: imports ${spec} (${to?.name ?? target}), but ${layer.name} may import only ${layer.layers.join(', ')}`);
      }
    } else if (!spec.startsWith('node:') && !layer.packages.includes(packageOf(spec))) {
      out.push(`${from}: imports package ${spec}, but ${layer.name} may import only ${layer.packages.join(', ') || 'node: builtins'}`);
    }
  }
  return out;
}

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...sources(rel));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

t.test('each layer imports only what it may', async (t) => {
  const files = [...sources('src'), ...sources('schemas')];
  const imports: Import[] = [];
  for (const from of files) for (const spec of importsOf(readFileSync(join(ROOT, from), 'utf8'))) imports.push({ from, spec });
  for (const l of LAYERS) {
    t.ok(files.some((f) => layerOf(f) === l), `${l.name} has source files`);
  }
  t.ok(imports.filter((i) => layerOf(i.from)?.name === 'engine').length > 20, 'engine imports were read');
  t.same(violations(imports), [], 'no import crosses a layer boundary');
});

t.test('the checker sees every kind of import and rejects what crosses a boundary', async (t) => {
  const src = [
    "import { a } from '../http/app.js';",
    "import type {\n  B,\n} from '../../schemas/index.js';",
    "export * from '../client/index.js';",
    "const x = await import('fastify');",
    "import 'node:fs';",
  ].join('\n');
  t.same(importsOf(src), ['../http/app.js', '../../schemas/index.js', '../client/index.js', 'fastify', 'node:fs']);
  const bad = violations(importsOf(src).map((spec) => ({ from: 'src/engine/kernel.ts', spec })));
  t.equal(bad.length, 4, bad.join('\n'));
  t.match(bad[0], /engine may import only engine, wire/);
  t.same(violations([{ from: 'src/client/client.ts', spec: '../engine/u64.js' }]).length, 1, 'client -> engine');
  t.same(violations([{ from: 'src/client/client.ts', spec: '../http/routes/cpus.js' }]).length, 1, 'client -> http');
  t.same(violations([{ from: 'src/client/client.ts', spec: '../wire/u64.js' }]), [], 'client -> wire is fine');
  t.same(violations([{ from: 'src/client/client.ts', spec: '../../schemas/index.js' }]), [], 'client -> schemas is fine');
  t.same(violations([{ from: 'src/wire/u64.ts', spec: '../engine/errno.js' }]).length, 1, 'wire -> engine');
  t.same(violations([{ from: 'schemas/common.ts', spec: '../src/engine/names.js' }]).length, 1, 'schemas -> engine');
  t.same(violations([{ from: 'src/engine/events.ts', spec: '../wire/records.js' }]), [], 'engine -> wire is fine');
  t.same(violations([{ from: 'src/engine/events.ts', spec: 'undici' }]).length, 1, 'engine -> a package');
});
