/**
 * The native addons the bundle keeps external, copied beside it (dist/bundle/node_modules/), so
 * the bundle is all the image needs: Node resolves `require('sodium-native')` from a chunk in
 * dist/bundle/chunks/ by walking up to dist/bundle/node_modules/.
 *
 * What to copy is what Node loads: the addon is required once from the repository's node_modules
 * (in a child process) and the packages of the files it loaded are copied whole (its loader,
 * `require-addon`, and that loader's own dependencies come along), except their `prebuilds/`:
 * of those only the files Node loaded, i.e. the one addon binary for this platform and
 * architecture (the image builds the bundle on the architecture it runs on). Packages that only
 * the Bare runtime uses are not loaded under Node, so they are not copied.
 */
import { spawnSync } from 'node:child_process';
import { chmod, cp, readdir, realpath } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';

/** The npm packages of native addons: external to the bundle, copied beside it. */
export const NATIVE_ADDONS: readonly string[] = ['sodium-native'];

/** Every file Node loads when it requires `name` from `root`'s node_modules. */
function filesLoaded(root: string, name: string): string[] {
  const script =
    "const m = require('node:module'); m.createRequire(process.argv[1] + '/')(process.argv[2]);" +
    'process.stdout.write(JSON.stringify(Object.keys(require.cache)));';
  const out = spawnSync(process.execPath, ['-e', script, root, name], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`cannot load ${name}: ${out.stderr.slice(-2_000)}`);
  return JSON.parse(out.stdout) as string[];
}

/** `@scope/name` or `name` of a path relative to node_modules, and the rest of the path. */
function splitPackage(path: string): { pkg: string; rest: string[] } {
  const parts = path.split(sep);
  const n = parts[0]?.startsWith('@') === true ? 2 : 1;
  return { pkg: parts.slice(0, n).join('/'), rest: parts.slice(n) };
}

/** Copies the addons and what they load into `outdir`/node_modules; returns the packages copied. */
export async function stageNativeAddons(root: string, outdir: string): Promise<string[]> {
  // Real paths (Node reports those; node_modules may be a symlink).
  const from = await realpath(join(root, 'node_modules'));
  const to = join(outdir, 'node_modules');
  const packages = new Map<string, Set<string>>();
  for (const name of NATIVE_ADDONS) {
    for (const file of filesLoaded(root, name)) {
      const path = relative(from, file);
      if (path.startsWith('..')) throw new Error(`${name} loaded ${file}, outside ${from}`);
      const { pkg, rest } = splitPackage(path);
      const loaded = packages.get(pkg) ?? new Set<string>();
      if (rest[0] === 'prebuilds') loaded.add(rest.join(sep));
      packages.set(pkg, loaded);
    }
  }
  for (const [pkg, prebuilds] of packages) {
    const src = join(from, pkg);
    await cp(src, join(to, pkg), {
      recursive: true,
      filter: (file) => {
        const path = relative(src, file);
        return (
          path.split(sep)[0] !== 'prebuilds' ||
          [...prebuilds].some((p) => p === path || p.startsWith(`${path}${sep}`))
        );
      },
    });
  }
  // The image's user (not the builder) reads them.
  for (const entry of await readdir(to, { recursive: true, withFileTypes: true }))
    await chmod(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o755 : 0o644);
  return [...packages.keys()].sort();
}
