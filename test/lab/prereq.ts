/**
 * Can this machine run the lab? Under `CI=true` it must: a missing prerequisite fails the suite.
 * Elsewhere (a developer's laptop without root) the lab suites are skipped, loudly.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, test } from '@jest/globals';
import { LabPrerequisiteError } from './errors.js';

export interface PrerequisiteOptions {
  /** Also require miniupnpd (nftables build) and nft, for `upnp` sites. Default true. */
  readonly miniupnpd?: boolean;
}

/** Debian package that provides each program the lab runs. */
const PROGRAMS: Readonly<Record<string, string>> = {
  ip: 'iproute2',
  'iptables-nft-restore': 'iptables',
  nft: 'nftables',
  miniupnpd: 'miniupnpd-nftables',
};

function findProgram(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

let cached: Map<boolean, readonly string[]> | undefined;

/** What is missing for the lab on this machine (empty when it can run). Cached per process. */
export function missingPrerequisites(options: PrerequisiteOptions = {}): readonly string[] {
  const wantMiniupnpd = options.miniupnpd ?? true;
  cached ??= new Map();
  const hit = cached.get(wantMiniupnpd);
  if (hit) {
    return hit;
  }
  const missing: string[] = [];
  if (process.platform !== 'linux') {
    missing.push(`Linux network namespaces are needed (platform is ${process.platform})`);
  } else if (process.getuid?.() !== 0) {
    missing.push('must run as root (network namespaces, veth pairs, iptables)');
  }
  const programs = wantMiniupnpd ? Object.keys(PROGRAMS) : ['ip', 'iptables-nft-restore'];
  for (const program of programs) {
    if (findProgram(program) === undefined) {
      missing.push(`${program} not found (apt-get install ${PROGRAMS[program]})`);
    }
  }
  if (wantMiniupnpd && findProgram('miniupnpd') !== undefined) {
    // The lab gives miniupnpd nftables chains; the iptables build would write legacy tables instead.
    const version = spawnSync('miniupnpd', ['--version'], { encoding: 'utf8', timeout: 5_000 });
    if (!`${version.stdout}${version.stderr}`.includes('nftables')) {
      missing.push('miniupnpd is not the nftables build (apt-get install miniupnpd-nftables)');
    }
  }
  if (missing.length === 0) {
    // Root in a container without CAP_SYS_ADMIN still cannot make namespaces: try once.
    const probe = `ptlab-probe-${process.pid}`;
    const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 5_000 });
    if (add.status === 0) {
      spawnSync('ip', ['netns', 'delete', probe], { timeout: 5_000 });
    } else {
      missing.push(`cannot create a network namespace: ${(add.stderr ?? '').trim()}`);
    }
  }
  cached.set(wantMiniupnpd, missing);
  return missing;
}

export function isCi(): boolean {
  return process.env.CI === 'true';
}

/**
 * The reason to skip the lab, or undefined when it can run. Under `CI=true` a missing prerequisite
 * is not a reason to skip: this throws `LabPrerequisiteError` instead.
 */
export function labSkipReason(options: PrerequisiteOptions = {}): string | undefined {
  const missing = missingPrerequisites(options);
  if (missing.length === 0) {
    return undefined;
  }
  if (isCi()) {
    throw new LabPrerequisiteError(missing);
  }
  return missing.join('; ');
}

/** Throws `LabPrerequisiteError` unless the lab can run here, whatever `CI` says. */
export function requireRoot(options: PrerequisiteOptions = {}): void {
  const missing = missingPrerequisites(options);
  if (missing.length > 0) {
    throw new LabPrerequisiteError(missing);
  }
}

/**
 * `describe` for lab suites. When the lab can run: a plain `describe`. When it cannot: outside CI
 * the suite is skipped with a loud banner on stderr; under `CI=true` the suite becomes one failing
 * test that names what is missing (a CI that silently skipped the NAT lab would prove nothing).
 */
export function describeLab(name: string, fn: () => void, options: PrerequisiteOptions = {}): void {
  const missing = missingPrerequisites(options);
  if (missing.length === 0) {
    describe(name, fn);
    return;
  }
  if (isCi()) {
    describe(name, () => {
      test('NAT lab prerequisites', () => {
        throw new LabPrerequisiteError(missing);
      });
    });
    return;
  }
  const bar = '!'.repeat(78);
  process.stderr.write(
    `\n${bar}\n!!! SKIPPING NAT LAB SUITE "${name}"\n!!! ${missing.join('\n!!! ')}\n` +
      `!!! (run as root with the packages above, or set CI=true to make this a failure)\n${bar}\n\n`,
  );
  describe.skip(name, fn);
}
