/**
 * The two-cluster test needs everything at once: the NAT lab (root, iproute2, iptables), the
 * Go-built control plane tools, Debian's redis and Prometheus. Outside CI a missing piece skips the
 * suite with a loud banner; under CI=true the suite becomes one failing test that names it.
 */
import { spawnSync } from 'node:child_process';
import { describe, test } from '@jest/globals';
import { probeTools } from '../env/tools.js';
import { isCi, missingPrerequisites } from '../lab/index.js';

export const PROGRAMS = ['redis-server', 'redis-cli', 'redis-benchmark', 'prometheus'] as const;

const onPath = (name: string): boolean =>
  spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;

export function missingForE2E(): string[] {
  const missing = [...missingPrerequisites()];
  for (const p of PROGRAMS)
    if (!onPath(p)) missing.push(`${p} not on PATH (apt-get install redis-server redis-tools prometheus)`);
  if (missing.length === 0) {
    const tools = probeTools();
    if (!tools.ok) missing.push(`control plane tools: ${tools.reason}`);
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
