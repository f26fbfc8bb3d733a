/**
 * Accept negotiation for snapshots (src/http/codecs/coverage.ts): the lookup of the
 * common single values must answer what the full parse of the list answers.
 */
import fc from 'fast-check';
import t from 'tap';
import { negotiate, negotiateList } from '../../../src/http/codecs/coverage.js';

t.test('a single Accept type answers as the list parse does', async (t) => {
  for (const v of ['application/octet-stream', 'application/json', 'text/plain', '*/*', 'application/*', 'text/*', 'image/png']) {
    t.equal(negotiate(v), negotiateList(v), v);
  }
  t.equal(negotiate('application/octet-stream'), 'binary');
  t.equal(negotiate('*/*'), 'json');
  t.equal(negotiate('text/plain'), 'text');
});

t.test('any list: negotiate agrees with the list parse (q-values, case, spaces)', async (t) => {
  const type = fc.constantFrom('application/octet-stream', 'APPLICATION/JSON', 'application/json', 'text/plain', 'Text/Plain', '*/*', 'text/*', 'image/png', '');
  const part = fc.tuple(type, fc.option(fc.constantFrom('0', '0.5', '1', '0.001', 'x'), { nil: undefined }), fc.constantFrom('', ' ', '  '))
    .map(([ty, q, sp]) => `${sp}${ty}${q === undefined ? '' : `;${sp}q=${q}`}${sp}`);
  fc.assert(fc.property(fc.array(part, { minLength: 1, maxLength: 4 }), (parts) => {
    const accept = parts.join(',');
    return negotiate(accept) === negotiateList(accept);
  }), { seed: 5, numRuns: 2000 });
  t.equal(negotiate('application/json;q=0, text/plain'), 'text', 'q=0 refuses a type');
  t.equal(negotiate('text/plain;q=0.2, application/octet-stream;q=0.9'), 'binary', 'the higher q wins');
});
