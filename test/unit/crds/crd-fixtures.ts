/**
 * The CRD fixtures, for the unit test here and the API-server integration test:
 * `test/fixtures/crds/valid/*.yaml` must be accepted; each `test/fixtures/crds/invalid/*.yaml` must
 * be refused, and its head comment says how:
 *
 *   # by: schema | cel          (which part of the CRD refuses it)
 *   # field: spec.expose[1]     (the field the API server's error names)
 *   # message: Duplicate value  (a substring of that error's message)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const CRD_FIXTURES_DIR = fileURLToPath(new URL('../../fixtures/crds/', import.meta.url));

export interface InvalidCrdFixture {
  file: string;
  by: 'schema' | 'cel' | '';
  field: string;
  message: string;
  object: Record<string, unknown>;
}

export interface ValidCrdFixture {
  file: string;
  object: Record<string, unknown>;
}

const yamlFiles = (dir: string) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort();

export function loadValidCrdFixtures(dir = join(CRD_FIXTURES_DIR, 'valid')): ValidCrdFixture[] {
  return yamlFiles(dir).map((file) => ({
    file,
    object: parse(readFileSync(join(dir, file), 'utf8')) as Record<string, unknown>,
  }));
}

export function loadInvalidCrdFixtures(dir = join(CRD_FIXTURES_DIR, 'invalid')): InvalidCrdFixture[] {
  return yamlFiles(dir).map((file) => {
    const text = readFileSync(join(dir, file), 'utf8');
    const header = (key: string) => new RegExp(`^# ${key}: (.+)$`, 'm').exec(text)?.[1]?.trim() ?? '';
    const by = header('by');
    return {
      file,
      by: by === 'schema' || by === 'cel' ? by : '',
      field: header('field'),
      message: header('message'),
      object: parse(text) as Record<string, unknown>,
    };
  });
}
