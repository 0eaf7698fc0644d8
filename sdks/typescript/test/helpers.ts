import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SDK_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The shared golden vectors, loaded at run time from the repository (never copied). */
export const VECTORS_DIR = join(SDK_DIR, '..', '..', 'spec', 'vectors');
export const SCHEMA_PATH = join(SDK_DIR, '..', '..', 'spec', 'events.schema.json');

export function loadVectors<T = any>(name: string): T {
  return JSON.parse(readFileSync(join(VECTORS_DIR, name), 'utf8')) as T;
}
