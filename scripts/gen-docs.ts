/**
 * The generated parts of docs/ (npm run docs rewrites them; test/docs.test.ts fails when a page
 * drifts): the configuration table from src/config.ts SETTINGS, each dialect's ioctl table
 * from src/wire/ioctls.ts, and the errno table from src/wire/names.ts with the engine's numbers
 * and the contract's statuses. A part sits between `<!-- generated: NAME -->` and `<!-- end generated -->`.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { settingsTable } from '../src/config.js';
import { errnoCode, strerror } from '../src/engine/errno.js';
import { statusOf } from '../src/http/problem.js';
import { DIALECT_WIRE, hexNr } from '../src/wire/ioctls.js';
import { DIALECT_NAMES, ERRNO_NAMES, type DialectName } from '../src/wire/names.js';

export const DOCS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');

function ioctlTable(d: DialectName): string {
  const w = DIALECT_WIRE[d];
  const rows = w.ioctls.map((c) => `| \`${c.name}\` | \`${hexNr(c.nr)}\` | \`${c.macro}\` | ${c.arg === 'none' ? 'none' : c.doc.replaceAll('|', '\\|')} |`);
  return [
    `Requests of \`${w.header}\` (\`${w.device}\`), in the driver's order; \`{cmd}\` takes the name or the number. ` +
      `Mode names: ${Object.entries(w.modes).map(([n, v]) => `\`"${n}"\` = ${v}`).join(', ')}. Unknown requests: ${w.unknownIoctl}.`,
    '',
    '| ioctl | request (LP64) | header | argument |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n') + '\n';
}

/** Each errno with its message, its number per dialect and the status the contract gives it. */
function errnoTable(): string {
  const rows = ERRNO_NAMES.map((e) => `| \`${e}\` | ${strerror(e)} | ${errnoCode(e, 'linux')} | ${errnoCode(e, 'openbsd')} | ${statusOf(e)} |`);
  return ['| errno | strerror | `code` on Linux | `code` on the BSDs | HTTP status |', '|---|---|---:|---:|---:|', ...rows].join('\n') + '\n';
}

/** Every generated part by name. */
export function generated(): Record<string, string> {
  const out: Record<string, string> = { settings: settingsTable(), errnos: errnoTable() };
  for (const d of DIALECT_NAMES) out[`ioctls-${d}`] = ioctlTable(d);
  return out;
}

const PART_RE = /(<!-- generated: ([\w-]+) -->\n)[\s\S]*?(<!-- end generated -->)/g;

/** The page with each generated part rewritten; throws on a part nobody generates. */
export function regenerate(page: string, parts = generated()): string {
  return page.replace(PART_RE, (_m, open: string, name: string, close: string) => {
    const text = parts[name];
    if (text === undefined) throw new Error(`no generated part "${name}"`);
    return open + text + close;
  });
}

/** The names of the parts a page holds. */
export function partsOf(page: string): string[] {
  return [...page.matchAll(PART_RE)].map((m) => m[2]!);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const f of readdirSync(DOCS).filter((f) => f.endsWith('.md'))) {
    const path = join(DOCS, f);
    const page = readFileSync(path, 'utf8');
    const next = regenerate(page);
    if (next !== page) {
      writeFileSync(path, next);
      process.stdout.write(`wrote ${path}\n`);
    }
  }
}
