/**
 * JSON Patch (RFC 6902): the op types the webhook returns, and a small applier for the subset we
 * emit (add, remove, replace). Ours rather than fast-json-patch so tests apply patches exactly as
 * the RFC (and the API server) reads them, with nothing lenient in between. Pure: it copies.
 */
import { JsonPatchError } from '../errors.js';

export type JsonPatchOp =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string };

/** Escapes one reference token of a JSON pointer (RFC 6901): `~` → `~0`, `/` → `~1`. */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function parsePointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw new JsonPatchError(path, 'a JSON pointer starts with "/"');
  return path
    .slice(1)
    .split('/')
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function arrayIndex(path: string, token: string, length: number, allowEnd: boolean): number {
  if (allowEnd && token === '-') return length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new JsonPatchError(path, `"${token}" is not an array index`);
  const i = Number(token);
  if (i > length || (!allowEnd && i === length)) throw new JsonPatchError(path, `index ${i} is out of range`);
  return i;
}

function applyOne(doc: unknown, op: JsonPatchOp): unknown {
  const tokens = parsePointer(op.path);
  const last = tokens.pop();
  if (last === undefined) {
    if (op.op === 'remove') throw new JsonPatchError(op.path, 'cannot remove the whole document');
    return structuredClone(op.value);
  }
  let parent: unknown = doc;
  for (const t of tokens) {
    if (Array.isArray(parent)) parent = parent[arrayIndex(op.path, t, parent.length, false)];
    else if (isObject(parent) && Object.hasOwn(parent, t)) parent = parent[t];
    else throw new JsonPatchError(op.path, `"${t}" does not exist`);
  }
  if (Array.isArray(parent)) {
    const i = arrayIndex(op.path, last, parent.length, op.op === 'add');
    if (op.op === 'add') parent.splice(i, 0, structuredClone(op.value));
    else if (op.op === 'replace') parent[i] = structuredClone(op.value);
    else parent.splice(i, 1);
    return doc;
  }
  if (!isObject(parent)) throw new JsonPatchError(op.path, 'the parent is not an object or array');
  if (op.op !== 'add' && !Object.hasOwn(parent, last)) {
    throw new JsonPatchError(op.path, `"${last}" does not exist`);
  }
  if (op.op === 'remove') delete parent[last];
  else parent[last] = structuredClone(op.value);
  return doc;
}

/** Applies `patch` to a copy of `doc`; throws JsonPatchError on an op that does not fit. */
export function applyPatch<T>(doc: T, patch: readonly JsonPatchOp[]): T {
  let out: unknown = structuredClone(doc);
  for (const op of patch) out = applyOne(out, op);
  return out as T;
}
