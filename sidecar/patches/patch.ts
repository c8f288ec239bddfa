/**
 * How a library patch is applied: its target's shape is checked first, and a missing or changed
 * target fails the node's start with `PatchTargetMissingError` (never a warning and a feature that
 * silently stops working). The list of patches, with why and when each can go, is ./inventory.ts.
 */

/** A patched library member is gone or no longer has the shape the patch relies on. */
export class PatchTargetMissingError extends Error {
  readonly patch: string;

  constructor(patch: string, detail: string) {
    super(`library patch ${patch}: ${detail} (see sidecar/patches/inventory.ts)`);
    this.name = 'PatchTargetMissingError';
    this.patch = patch;
  }
}

/** One member a patch reads or replaces, and what it must be. */
export type MemberKind = 'function' | 'object' | 'number' | 'defined';

function hasKind(value: unknown, kind: MemberKind): boolean {
  switch (kind) {
    case 'function':
      return typeof value === 'function';
    case 'object':
      return typeof value === 'object' && value !== null;
    case 'number':
      return typeof value === 'number';
    case 'defined':
      return value !== undefined;
  }
}

/**
 * Throws `PatchTargetMissingError` unless `target` has every member in `members` with its kind.
 * Returns the members' values, read with `Reflect.get` (private fields are plain properties in JS).
 */
export function expectShape(
  patch: string,
  what: string,
  target: unknown,
  members: Readonly<Record<string, MemberKind>>,
): Record<string, unknown> {
  if (typeof target !== 'object' && typeof target !== 'function')
    throw new PatchTargetMissingError(patch, `${what} is missing`);
  if (target === null) throw new PatchTargetMissingError(patch, `${what} is missing`);
  const values: Record<string, unknown> = {};
  for (const [name, kind] of Object.entries(members)) {
    const value: unknown = Reflect.get(target, name);
    if (!hasKind(value, kind))
      throw new PatchTargetMissingError(
        patch,
        `${what} has no ${kind === 'defined' ? '' : `${kind} `}${name}`,
      );
    values[name] = value;
  }
  return values;
}
