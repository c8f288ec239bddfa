/**
 * kubo for the jest interop tests: `describeWithKubo`, plus everything of ./kubo-daemon.ts (the
 * daemon itself lives there, free of jest, so that the bench can run kubo too).
 */
import { spawnSync } from 'node:child_process';
import { describe } from '@jest/globals';
import { buildScriptPath } from '../env/tools.js';

export * from './kubo-daemon.js';

const inCI = (): boolean => process.env.CI === 'true';

/**
 * `describe` when kubo is cached or can be built here; otherwise, outside CI, `describe.skip` with a
 * loud reason. Under CI=true it always runs (and fails on a missing toolchain).
 */
export function describeWithKubo(name: string, body: () => void): void {
  const r = spawnSync('bash', [buildScriptPath, '--probe', 'ipfs'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0 && !inCI()) {
    const reason = r.error?.message ?? (r.stderr.trim() || `build-tools.sh --probe ipfs exited ${r.status}`);
    const bar = '!'.repeat(78);
    console.warn(
      `\n${bar}\n!! SKIPPED: ${name}\n!! kubo (ipfs) cannot be built here:\n${reason
        .split('\n')
        .map((l) => `!!   ${l}`)
        .join('\n')}\n!! Install Go >= 1.26 (or set GO=/path/to/go); CI=true makes this a failure.\n${bar}\n`,
    );
    describe.skip(name, body);
    return;
  }
  describe(name, body);
}
