/** One line naming the first bad field of a zod parse: how every config file's error reads. */
import type { z } from 'zod';
import { ConfigError } from '../node/errors.js';

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? String(p) : `.${String(p)}`;
  return out === '' ? '(top level)' : out;
}

function describeValue(root: unknown, path: ReadonlyArray<PropertyKey>): string {
  let v: unknown = root;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return '';
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  if (v === undefined) return ', got nothing';
  const s = JSON.stringify(v);
  return s === undefined ? '' : `, got ${s.length > 60 ? `${s.slice(0, 57)}...` : s}`;
}

/** The ConfigError of a failed parse of `raw`; `prefix` goes before the field (a file's name). */
export function configErrorOf(error: z.ZodError, raw: unknown, prefix = ''): ConfigError {
  const issue = error.issues[0];
  if (issue === undefined) return new ConfigError(`${prefix}(top level)`, 'invalid config');
  if (issue.code === 'unrecognized_keys') {
    const field = formatPath([...issue.path, issue.keys[0] ?? '?']);
    return new ConfigError(`${prefix}${field}`, `unknown field "${issue.keys.join('", "')}"`);
  }
  const field = formatPath(issue.path);
  const got = issue.code === 'custom' ? '' : describeValue(raw, issue.path);
  return new ConfigError(`${prefix}${field}`, `${issue.message}${got}`);
}
