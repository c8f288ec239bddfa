/**
 * esbuild plugins of the bundle build (bin/build-bundle.ts).
 *
 * `inlineSsdpPackageJson`: `@achingbrain/ssdp` (UPnP discovery) reads its own name and version
 * through `createRequire(import.meta.url)('../../package.json')`, a path relative to its module
 * that a bundle does not have. The two values are written into its source instead; the build
 * fails when that line is no longer there (a new version of the package: look again).
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Plugin } from 'esbuild';

const SSDP_MODULE = /[\\/]node_modules[\\/]@achingbrain[\\/]ssdp[\\/]dist[\\/]src[\\/]ssdp\.js$/;
export const SSDP_READ = "req('../../package.json')";

export const inlineSsdpPackageJson: Plugin = {
  name: 'inline-ssdp-package-json',
  setup(build) {
    build.onLoad({ filter: SSDP_MODULE }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      if (!source.includes(SSDP_READ))
        throw new Error(`${args.path}: no ${SSDP_READ} to inline (bin/bundle-plugins.ts)`);
      const pkg = JSON.parse(
        await readFile(join(dirname(args.path), '..', '..', 'package.json'), 'utf8'),
      ) as {
        name?: unknown;
        version?: unknown;
      };
      const fields = JSON.stringify({ name: pkg.name, version: pkg.version });
      return { contents: source.replace(SSDP_READ, fields), loader: 'js' };
    });
  },
};
