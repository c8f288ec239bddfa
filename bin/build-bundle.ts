/**
 * `npm run build`, last step: the CLI as one ESM bundle (dist/bundle/peertunnel.mjs) whose
 * subcommands are split into chunks loaded when they run, so `peertunnel node` reads a handful of
 * files instead of ~1,100 modules (ready in about half the time, a smaller heap left behind).
 *
 * Everything is bundled (the operator's Kubernetes client too, in the chunks only `peertunnel
 * operator` loads) except the native addons (`sodium-native`, `*.node`): a `.node` binary cannot
 * be bundled, and sodium-native finds its binary through `require-addon`, which resolves it from
 * the package's own directory and package.json at run time. They are copied beside the bundle
 * (bin/bundle-addons.ts), so dist/bundle/ is the whole application the image copies.
 *
 * The first line carries the Node flags of sidecar/node/flags.ts, so the bundle run as a program
 * (the image's entrypoint) gets them.
 */
import { spawnSync } from 'node:child_process';
import { chmod, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { BUNDLE_PATH, IMAGE_UID, NODE_FLAGS } from '../sidecar/node/flags.js';
import { NATIVE_ADDONS, stageNativeAddons } from './bundle-addons.js';
import { inlineSsdpPackageJson } from './bundle-plugins.js';

export const BUNDLE_EXTERNAL: readonly string[] = [...NATIVE_ADDONS, '*.node'];

/** dist/bin/build-bundle.js → the repository root. */
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

async function main(): Promise<void> {
  const outfile = join(root, BUNDLE_PATH);
  const outdir = dirname(outfile);
  // Chunk names carry a content hash: an old build's chunks would otherwise stay beside the new.
  await rm(outdir, { recursive: true, force: true });
  const result = await build({
    entryPoints: { peertunnel: join(root, 'dist', 'bin', 'peertunnel.js') },
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node24',
    external: [...BUNDLE_EXTERNAL],
    plugins: [inlineSsdpPackageJson],
    // CommonJS dependencies (pino, prom-client) call require() for Node built-ins.
    banner: {
      js: "import { createRequire as __peertunnelCreateRequire } from 'node:module'; const require = __peertunnelCreateRequire(import.meta.url);",
    },
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const text = await readFile(outfile, 'utf8');
  const body = text.startsWith('#!') ? text.slice(text.indexOf('\n') + 1) : text;
  await writeFile(outfile, `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}\n${body}`);
  await chmod(outfile, 0o755);
  await stageNativeAddons(root, outdir);
  // What went into which file (outside the bundle's directory, so the image does not copy it).
  await writeFile(join(root, 'dist', 'bundle-meta.json'), JSON.stringify(result.metafile));
  // Fill the compile cache beside the bundle (bin/peertunnel.ts): `node` imports everything a
  // node runs, writes the cache, then stops at the missing config (exit 2, one line).
  const warm = spawnSync(
    process.execPath,
    [...NODE_FLAGS, outfile, 'node', '--config', join(outdir, 'no-such-config')],
    { encoding: 'utf8' },
  );
  if (warm.status !== 2 || !warm.stderr.includes('invalid config'))
    throw new Error(`the bundle did not start: exit ${warm.status}: ${warm.stderr.slice(-2_000)}`);
  // Node writes its cache files 0600 under a directory named after the Node version, the V8
  // flags and the uid of the process (`v24.21.0-x64-<hash>-<uid>`); the image runs as IMAGE_UID,
  // not as the user that built it: give it the same cache under its name, readable by it.
  const cacheDir = join(outdir, '.compile-cache');
  for (const entry of await readdir(cacheDir, { recursive: true, withFileTypes: true }))
    await chmod(join(entry.parentPath, entry.name), entry.isDirectory() ? 0o755 : 0o644);
  const uid = process.getuid?.() ?? 0;
  if (uid !== IMAGE_UID)
    for (const name of await readdir(cacheDir))
      if (name.endsWith(`-${uid}`))
        await symlink(name, join(cacheDir, `${name.slice(0, -String(uid).length)}${IMAGE_UID}`));
}

await main();
