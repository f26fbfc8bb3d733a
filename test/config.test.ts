import t from 'tap';
import { loadConfig, parseSize } from '../src/config.js';

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
