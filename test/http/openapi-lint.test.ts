import t from 'tap';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { OPENAPI_PATH } from '../../scripts/gen-openapi.js';

const root = dirname(dirname(OPENAPI_PATH));

t.test('redocly lint (recommended rules, redocly.yaml) finds no error and no warning in openapi/openapi.json', async (t) => {
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      join(root, 'node_modules', '.bin', 'redocly'),
      ['lint', '--config', join(root, 'redocly.yaml'), '--format=json', OPENAPI_PATH],
      // No telemetry or update check: the suite runs without a network.
      { cwd: root, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' }, maxBuffer: 64 << 20 },
      (err, stdout) => (stdout.trim().startsWith('{') ? resolve(stdout) : reject(err ?? new Error(stdout))),
    );
  });
  const report = JSON.parse(out) as { totals: { errors: number; warnings: number }; problems: Array<{ ruleId: string; message: string }> };
  const problems = report.problems.map((p) => `${p.ruleId}: ${p.message}`);
  t.equal(report.totals.errors, 0, 'errors', { problems });
  t.equal(report.totals.warnings, 0, 'warnings', { problems });
});
