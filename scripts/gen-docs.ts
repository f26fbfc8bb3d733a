/** Rewrites the generated parts of docs/ (npm run docs): the configuration table from src/config.ts SETTINGS. */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { settingsTable } from '../src/config.js';

const DOCS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs');
const BEGIN = '<!-- settings: generated from src/config.ts by npm run docs -->\n';
const END = '<!-- settings end -->';

/** The page with the text between the markers replaced. */
export function withSettings(page: string): string {
  const a = page.indexOf(BEGIN);
  const b = page.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/configuration.md has no "${BEGIN.trim()}" … "${END}" markers`);
  return page.slice(0, a + BEGIN.length) + settingsTable() + page.slice(b);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = join(DOCS, 'configuration.md');
  writeFileSync(path, withSettings(readFileSync(path, 'utf8')));
  process.stdout.write(`wrote ${path}\n`);
}
