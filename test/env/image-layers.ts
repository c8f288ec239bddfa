/**
 * The layers of a docker-archive (what build-images.sh writes): their sizes, base first, and the
 * paths one of them holds. Read with `tar`, nothing loaded into a container engine.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ImageLayer {
  /** The layer's tar inside the archive. */
  readonly file: string;
  /** Its uncompressed size in bytes (what `buildah images` adds up). */
  readonly bytes: number;
}

/** The image's layers, base first. */
export async function imageLayers(archive: string): Promise<ImageLayer[]> {
  const manifest = JSON.parse((await run('tar', ['-xOf', archive, 'manifest.json'])).stdout) as {
    Layers?: string[];
  }[];
  const files = manifest[0]?.Layers ?? [];
  // `tar -tv` lines: mode owner size date time name (layer tars are regular files, never links).
  const sizes = new Map<string, number>();
  for (const line of (await run('tar', ['-tvf', archive])).stdout.split('\n')) {
    const m = /^-\S*\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.+)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) sizes.set(m[2], Number(m[1]));
  }
  return files.map((file) => {
    const bytes = sizes.get(file);
    if (bytes === undefined) throw new Error(`${archive}: no regular file ${file} for a layer`);
    return { file, bytes };
  });
}

/** The paths a layer holds, as its tar lists them (`app/dist/bundle/peertunnel.mjs`, `app/`). */
export async function layerPaths(archive: string, layer: ImageLayer): Promise<string[]> {
  const { stdout } = await run(
    'bash',
    ['-c', 'tar -xOf "$1" "$2" | tar -t', 'layer-paths', archive, layer.file],
    {
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  return stdout.split('\n').filter((l) => l !== '');
}
