/**
 * The container images a real node runs, built here by `build-images.sh` (no registry is reachable
 * from a test machine) and cached by a hash of their inputs. The script is the one place that knows
 * how; this module runs it and reads its answer.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type ImageName = 'pause' | 'node-base' | 'peertunnel' | 'redis';

export interface BuiltImage {
  readonly name: ImageName;
  /** The reference pods name (`localhost/peertunnel:<key>`, `docker.io/library/redis:7`). */
  readonly ref: string;
  /** A docker-archive, for `ctr images import`. */
  readonly archive: string;
}

export class ImagesBuildError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`building the test images failed (exit ${String(exitCode)}):\n${output}`);
    this.name = 'ImagesBuildError';
  }
}

const here = dirname(fileURLToPath(import.meta.url));
/** Next to this file when run from source; from `dist/test/env/` the script stays in the source tree. */
export const imagesScriptPath: string =
  [join(here, 'build-images.sh'), join(here, '..', '..', '..', 'test', 'env', 'build-images.sh')].find((p) =>
    existsSync(p),
  ) ?? join(here, 'build-images.sh');

/** Builds what is not cached (minutes cold; concurrent callers wait on the script's lock). */
export function ensureImages(
  names: readonly ImageName[],
  log: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<Record<ImageName, BuiltImage | undefined>> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [imagesScriptPath, ...names], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let tail: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      for (const line of c.split('\n').filter(Boolean)) {
        if (line.startsWith('[peertunnel images')) log(line);
        tail.push(line);
      }
      if (tail.length > 400) tail = tail.slice(-200);
    });
    child.on('error', (err) => reject(new ImagesBuildError(null, err.message)));
    child.on('close', (code) => {
      if (code !== 0) {
        reject(new ImagesBuildError(code, tail.slice(-80).join('\n')));
        return;
      }
      const out: Record<ImageName, BuiltImage | undefined> = {
        pause: undefined,
        'node-base': undefined,
        peertunnel: undefined,
        redis: undefined,
      };
      for (const line of stdout.split('\n')) {
        const [name, ref, archive] = line.split('\t');
        if (name && ref && archive && name in out)
          out[name as ImageName] = { name: name as ImageName, ref, archive };
      }
      const missing = names.filter((n) => out[n] === undefined);
      if (missing.length > 0)
        reject(new ImagesBuildError(0, `build-images.sh did not report ${missing.join(', ')}`));
      else resolve(out);
    });
  });
}
