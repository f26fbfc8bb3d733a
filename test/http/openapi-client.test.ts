/**
 * A client nobody on the project wrote: openapi-typescript types from the committed
 * document, an openapi-fetch program type-checked with tsc and run against a real
 * server on an ephemeral port doing the main loop (open, init, enable, binary events,
 * coverage as JSON and as bytes, disable, close), with the bearer token.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import openapiTS, { astToString } from 'openapi-typescript';
import ts from 'typescript';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { OPENAPI_PATH } from '../../scripts/gen-openapi.js';

const root = dirname(dirname(OPENAPI_PATH));

/** The recipe of docs/openapi.md: `format: binary` bodies and responses are bytes. */
async function generateTypes(): Promise<string> {
  const doc = JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'));
  const ast = await openapiTS(doc, {
    transform(schema) {
      if (schema.format === 'binary') return ts.factory.createTypeReferenceNode('Uint8Array');
      return undefined;
    },
  });
  return astToString(ast);
}

const PROGRAM = `
import createClient from 'openapi-fetch';
import type { paths } from './kcovd.js';

// JSON media only: the JSON reply types, not a union with the text and binary ones.
const client = createClient<paths, 'application/json' | 'application/problem+json'>({
  baseUrl: process.argv[2]!,
  headers: { authorization: 'Bearer ' + process.argv[3]! },
});

function must<T>(what: string, r: { data?: T; error?: unknown; response: Response }): T {
  if (r.data === undefined && r.response.status !== 204) throw new Error(what + ': ' + r.response.status + ' ' + JSON.stringify(r.error));
  return r.data as T;
}

const kernel = must('create', await client.POST('/v1/kernels', { body: { name: 'generated', dialect: 'linux', ncpus: 1 } })).name;
const tid = 100;
const fd: number = must('open', await client.POST('/v1/kernels/{kernel}/descriptors', { params: { path: { kernel } }, body: { tid } })).fd;
const ioctl = (cmd: string, arg: number | string) =>
  client.POST('/v1/kernels/{kernel}/descriptors/{fd}/ioctl/{cmd}', { params: { path: { kernel, fd, cmd } }, body: { tid, arg } });
const init = must('init', await ioctl('KCOV_INIT_TRACE', 64));
const enable = must('enable', await ioctl('KCOV_ENABLE', 'pc'));

// Binary events: the Uint8Array goes out as the bytes it holds.
const bytes = new Uint8Array(new BigUint64Array([0xffffffff81000010n, 0xffffffff81000020n, 0x10n]).buffer);
const events = must('events', await client.POST('/v1/kernels/{kernel}/threads/{tid}/events', {
  params: { path: { kernel, tid }, query: { kind: 'pc' } },
  body: bytes,
  bodySerializer: (b) => b,
  headers: { 'content-type': 'application/octet-stream' },
}));
const accepted: number = events.accepted;

const json = must('coverage json', await client.GET('/v1/kernels/{kernel}/descriptors/{fd}/coverage', { params: { path: { kernel, fd } } }));
// Compile-time: the JSON coverage type has no string in it (the 206 reply adds its
// octet-stream map to the success union, hence the 'mode' in check).
type Coverage = typeof json;
const noString: [Extract<Coverage, string>] extends [never] ? true : false = true;
if (!('mode' in json) || json.mode !== 'pc') throw new Error('not PC coverage: ' + JSON.stringify(json));
const pcs: string[] = json.pcs;

const raw = must('coverage binary', await client.GET('/v1/kernels/{kernel}/descriptors/{fd}/coverage', {
  params: { path: { kernel, fd } },
  headers: { accept: 'application/octet-stream' },
  parseAs: 'arrayBuffer',
}));
const words = new BigUint64Array(raw);

const disable = must('disable', await ioctl('KCOV_DISABLE', 0));
const missing = await client.GET('/v1/kernels/{kernel}/descriptors/{fd}', { params: { path: { kernel, fd: 999 } } });
const errno: string | undefined = missing.error?.errno;
const closed = await client.DELETE('/v1/kernels/{kernel}/descriptors/{fd}', { params: { path: { kernel, fd } } });

console.log(JSON.stringify({
  states: [init.descriptor.state, enable.descriptor.state, disable.descriptor.state],
  accepted, pcs, noString,
  bytes: raw.byteLength, count: Number(words[0]), firstPc: '0x' + words[1]!.toString(16),
  missing: [missing.response.status, missing.response.headers.get('content-type')?.split(';')[0], errno],
  closed: closed.response.status,
}));
`;

t.test('openapi-typescript + openapi-fetch: generated types type-check and run the main loop', async (t) => {
  const dir = mkdtempSync(join(root, 'dist', '.openapi-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'kcovd.ts'), await generateTypes());
  writeFileSync(join(dir, 'main.ts'), PROGRAM);

  const program = ts.createProgram([join(dir, 'main.ts')], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    noUncheckedIndexedAccess: true,
    skipLibCheck: true,
    types: ['node'],
    outDir: dir,
  });
  const emitted = program.emit();
  const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics)
    .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  t.same(diagnostics, [], 'tsc finds no error in the program against the generated types');

  const token = 'generated-client-token';
  const app = await buildApp({ config: loadConfig({ KCOV_NCPUS: '1', KCOV_TOKEN: token }) });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const { port } = app.server.address() as { port: number };

  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [join(dir, 'main.js'), `http://127.0.0.1:${port}`, token], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`exit ${code}: ${stderr}`))));
  });
  const r = JSON.parse(out);
  t.same(r.states, ['INIT', 'TRACE_PC', 'INIT'], 'init, enable, disable');
  t.equal(r.accepted, 3, 'three PCs from a binary body');
  t.same(r.pcs, ['0xffffffff81000010', '0xffffffff81000020', '0x10'], 'coverage as JSON');
  t.equal(r.bytes, 64 * 8, 'coverage as bytes: the whole area');
  t.equal(r.count, 3);
  t.equal(r.firstPc, '0xffffffff81000010');
  t.same(r.missing, [404, 'application/problem+json', 'EBADF'], 'errors are typed problems');
  t.equal(r.closed, 204);
});
