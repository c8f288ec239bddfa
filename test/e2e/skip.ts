/**
 * The two-cluster test needs everything at once: the NAT lab (root, iproute2, iptables), the
 * Go-built control plane and node tools, containerd and the image tools, and Prometheus. Outside CI a missing piece skips the
 * suite with a loud banner; under CI=true the suite becomes one failing test that names it.
 */
import { spawnSync } from 'node:child_process';
import { describe, test } from '@jest/globals';
import { probeNodeTools, probeTools } from '../env/tools.js';
import { isCi, missingPrerequisites } from '../lab/index.js';

/** Prometheus here; the rest makes and runs the real nodes and their images (.ci/run installs them). */
export const PROGRAMS = [
  'prometheus',
  'containerd',
  'ctr',
  'runc',
  'buildah',
  'debootstrap',
  'socat',
  'nsenter',
] as const;

const onPath = (name: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;

export function missingForE2E(): string[] {
  const missing = [...missingPrerequisites()];
  for (const p of PROGRAMS)
    if (!onPath(p)) missing.push(`${p} not on PATH (the Debian packages .ci/run installs)`);
  if (missing.length === 0) {
    const tools = probeTools();
    if (!tools.ok) missing.push(`control plane tools: ${tools.reason}`);
    const nodeTools = probeNodeTools();
    if (!nodeTools.ok) missing.push(`node tools: ${nodeTools.reason}`);
  }
  return missing;
}

export function describeE2E(name: string, fn: () => void): void {
  const missing = missingForE2E();
  if (missing.length === 0) {
    describe(name, fn);
    return;
  }
  if (isCi()) {
    describe(name, () => {
      test('end-to-end prerequisites', () => {
        throw new Error(`the two-cluster test cannot run here: ${missing.join('; ')}`);
      });
    });
    return;
  }
  const bar = '!'.repeat(78);
  process.stderr.write(
    `\n${bar}\n!!! SKIPPING END-TO-END SUITE "${name}"\n!!! ${missing.join('\n!!! ')}\n` +
      `!!! (run as root with the packages above, or set CI=true to make this a failure)\n${bar}\n\n`,
  );
  describe.skip(name, fn);
}
