import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineOptions, loadConfig, parseSize, settingsTable, SETTINGS } from '../src/config.js';

t.test('defaults follow the contract: 127.0.0.1:5268, linux', async (t) => {
  const c = loadConfig({});
  t.equal(c.port, 5268);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.dialect, 'linux');
  t.equal(c.memoryLimit, 1024 ** 3);
  t.equal(c.token, undefined);
  t.ok(c.ncpus >= 1);
});

t.test('environment and flags; flags win', async (t) => {
  const c = loadConfig(
    { PORT: '8000', KCOV_DIALECT: 'OpenBSD', KCOV_NCPUS: '4', KCOV_MEMORY_LIMIT: '512M', KCOV_TOKEN: 's3cret' },
    ['--port', '9000', '--memory-limit=2G', '--host', '0.0.0.0'],
  );
  t.equal(c.port, 9000);
  t.equal(c.host, '0.0.0.0');
  t.equal(c.dialect, 'openbsd');
  t.equal(c.ncpus, 4);
  t.equal(c.memoryLimit, 2 * 1024 ** 3);
  t.equal(c.token, 's3cret');
});

t.test('bad settings fail with the variable named', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), /PORT/);
  t.throws(() => loadConfig({ PORT: '70000' }), /PORT/);
  t.throws(() => loadConfig({ KCOV_DIALECT: 'plan9' }), /KCOV_DIALECT/);
  t.throws(() => loadConfig({ KCOV_NCPUS: '0' }), /KCOV_NCPUS/);
  t.throws(() => loadConfig({ KCOV_MEMORY_LIMIT: 'lots' }), /KCOV_MEMORY_LIMIT/);
  t.throws(() => loadConfig({}, ['--port']), /needs a value/);
  t.throws(() => loadConfig({}, ['stray']), /unexpected argument/);
});

t.test('sizes take K, M, G and T suffixes in powers of 1024', async (t) => {
  t.equal(parseSize('4096', 'x'), 4096);
  t.equal(parseSize('64K', 'x'), 65536);
  t.equal(parseSize('1GiB', 'x'), 1024 ** 3);
  t.equal(parseSize('3m', 'x'), 3 * 1024 ** 2);
});

t.test('the engine gets the settings the table marks for it, per-kernel caps as kernelCaps', async (t) => {
  const c = loadConfig({ KCOV_NCPUS: '3', KCOV_MAX_THREADS: '77', KCOV_CPU_AREA_WORDS: '64' });
  t.same(engineOptions(c), {
    dialect: 'linux',
    ncpus: 3,
    memoryLimit: 1024 ** 3,
    cpuAreaWords: 64,
    maxKernels: 64,
    kernelCaps: { maxDescriptors: 1024, maxThreads: 77, maxRemotes: 4096, maxGuards: 1 << 20 },
  });
});

t.test('every setting is parsed from its variable and bounded', async (t) => {
  for (const row of SETTINGS) {
    const kind = row.kind as { type: string; min?: number; max?: number };
    if (kind.type !== 'int') continue;
    const env = { [row.env]: String(kind.max) };
    if (row.env === 'KCOV_CONNECTION_TIMEOUT') env.KCOV_MAX_WAIT = '0';
    t.equal(loadConfig(env)[row.key], kind.max, `${row.env} takes its maximum`);
    t.throws(() => loadConfig({ [row.env]: String(kind.max! + 1) }), new RegExp(row.env), `${row.env} past its maximum`);
  }
  t.equal(loadConfig({ KCOV_TOKEN: '' }).token, undefined, 'an empty token is no token');
  t.equal(loadConfig({}).socket, undefined);
});

t.test('docs/configuration.md holds the table SETTINGS makes (npm run docs rewrites it)', async (t) => {
  const page = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'configuration.md'), 'utf8');
  t.ok(page.includes(settingsTable()), 'the table is on the page as generated');
  for (const row of SETTINGS) t.match(page, `| \`${row.env}\` |`, row.env);
});
