/**
 * The image built from the Dockerfile (test/env/build-images.sh, as the real-node test runs it),
 * read from its docker-archive: the base's layers (Debian, Node) and one layer of the
 * application that holds the bundle and nothing else (no node_modules of all production
 * dependencies, no npm cache, nothing a build step left in /tmp), under a measured bound.
 *
 * Needs root and buildah (Debian packages, .ci/run) to build the image, a minute or three when it
 * is not cached: skipped loudly otherwise, failing under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from '@jest/globals';
import { BUNDLE_PATH } from '../../sidecar/node/flags.js';
import { type ImageLayer, imageLayers, layerPaths } from '../env/image-layers.js';
import { type BuiltImage, ensureImages } from '../env/images.js';

/** The application layer, measured at 11.1 MB (uncompressed; 2.6 MB gzipped). */
const APP_LAYER_MAX_BYTES = 14_000_000;

function cannotBuild(): string | undefined {
  if (process.getuid?.() !== 0) return 'building images needs root';
  try {
    execFileSync('buildah', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'no buildah (Debian package buildah)';
  }
  return undefined;
}

const reason = cannotBuild();
if (reason !== undefined) {
  if (process.env.CI === 'true') throw new Error(`the image test cannot run: ${reason}`);
  console.warn(`\n!! SKIPPED: the built image's layers: ${reason}\n`);
}

(reason === undefined ? describe : describe.skip)('the image built from the Dockerfile', () => {
  let image: BuiltImage;
  let base: ImageLayer[];
  let layers: ImageLayer[];

  beforeAll(async () => {
    const built = await ensureImages(['node-base', 'peertunnel']);
    image = built.peertunnel as BuiltImage;
    base = await imageLayers((built['node-base'] as BuiltImage).archive);
    layers = await imageLayers(image.archive);
  }, 15 * 60_000);

  it("is the base's layers and one layer of the application, under its bound", () => {
    expect(layers.slice(0, -1)).toEqual(base);
    const app = layers.at(-1) as ImageLayer;
    expect(app.bytes).toBeLessThan(APP_LAYER_MAX_BYTES);
    // The sizes, as the README gives them.
    process.stderr.write(`[image] ${image.ref}: layers (bytes) ${layers.map((l) => l.bytes).join(', ')}\n`);
  });

  it('holds the bundle and nothing else in its application layer', async () => {
    const paths = await layerPaths(image.archive, layers.at(-1) as ImageLayer);
    const bundleDir = `app/${BUNDLE_PATH.slice(0, BUNDLE_PATH.lastIndexOf('/'))}/`;
    // Only the bundle's directory and the directories that lead to it (WORKDIR /app).
    const outside = paths
      .map((p) => p.replace(/^\.\//, ''))
      .filter((p) => !p.startsWith(bundleDir) && !bundleDir.startsWith(p.endsWith('/') ? p : `${p}/`));
    expect(outside).toEqual([]);
    expect(paths.map((p) => p.replace(/^\.\//, ''))).toContain(`app/${BUNDLE_PATH}`);
  });
});
