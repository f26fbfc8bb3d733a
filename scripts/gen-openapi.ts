/** Writes openapi/openapi.json from the running app's routes (npm run openapi). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config.js';
import { buildApp } from '../src/http/app.js';

export async function generateOpenApi(): Promise<string> {
  const app = await buildApp({ config: loadConfig({}) });
  await app.ready();
  const doc = JSON.stringify(app.swagger(), null, 2) + '\n';
  await app.close();
  return doc;
}

export const OPENAPI_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'openapi', 'openapi.json');

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const doc = await generateOpenApi();
  mkdirSync(dirname(OPENAPI_PATH), { recursive: true });
  writeFileSync(OPENAPI_PATH, doc);
  process.stdout.write(`wrote ${OPENAPI_PATH} (${doc.length} bytes)\n`);
}
