/**
 * What one real node run (real-node.ts) leaves on the host besides the shared host settings, and
 * its removal, for the run's own stop() and for the janitor of a killed run (node-janitor.ts):
 * pod processes (in the run's cgroup under every hierarchy), containerd's shims (they outlive
 * containerd, and name the run's directory like every daemon of the run), mounts under the run's
 * directory (overlay rootfs, shm, pod netns, kubelet tmpfs volumes), the cgroups, CNI's result
 * files of its network, the kubelet's `/var/log/containers` links into the run's directory.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmdirSync } from 'node:fs';
import { rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeRecord } from './node-record.js';

const CGROUP_ROOT = '/sys/fs/cgroup';

/** Cgroup v1 hierarchies (and the v2 one of a hybrid host, which runc also writes to). */
export function cgroupHierarchies(): string[] {
  return readdirSync(CGROUP_ROOT, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => join(CGROUP_ROOT, e.name));
}

/** Every pid in a cgroup tree. */
function cgroupPids(dir: string): number[] {
  const out: number[] = [];
  const walk = (d: string): void => {
    try {
      for (const l of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) out.push(Number(l));
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    } catch {
      // Gone meanwhile.
    }
  };
  walk(dir);
  return out;
}

/** Removes a cgroup tree, children first (a cgroup with processes or children cannot go). */
function removeCgroupTree(dir: string): boolean {
  if (!existsSync(dir)) return true;
  try {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
    }
    rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

/** Pids whose command line mentions `needle` (every daemon and shim of a run names its directory). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) out.push(Number(e));
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

function killAll(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
}

/** Kills what `find` returns until it returns nothing (SIGKILL is not instantaneous); true if so. */
async function killUntilGone(find: () => number[]): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    const pids = find();
    if (pids.length === 0) return true;
    killAll(pids);
    await sleep(100);
  }
  return find().length === 0;
}

/** Mount points at or below `dir`, deepest first. */
export function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)))
    // mountinfo escapes spaces and such as octal; none of our paths has them.
    .map((p) => p.replace(/\\040/g, ' '));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function unmountAll(dir: string): string[] {
  for (let round = 0; round < 3; round++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return [];
    for (const p of points) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
  }
  return mountsUnder(dir);
}

/**
 * Removes a run's leftovers (everything but the host settings and the record): kills its pods and
 * every process naming its directory (containerd, shims, kubelet, bridges), unmounts, removes its
 * cgroups, CNI results, log links and directory. Returns what could not be removed.
 */
export async function removeRunLeftovers(r: Pick<NodeRecord, 'runName' | 'dir'>): Promise<string[]> {
  const problems: string[] = [];
  const cgroups = cgroupHierarchies().map((h) => join(h, r.runName));
  // Pods first (the shims would report their death to a containerd that may still run).
  if (!(await killUntilGone(() => cgroups.flatMap(cgroupPids)))) problems.push('pod processes left');
  if (!(await killUntilGone(() => pidsMentioning(`${r.dir}/`)))) problems.push('processes left');
  const mounts = unmountAll(r.dir);
  if (mounts.length > 0) problems.push(`mounts left: ${mounts.join(', ')}`);
  for (const c of cgroups) {
    let gone = removeCgroupTree(c);
    for (let i = 0; i < 20 && !gone; i++) {
      await sleep(100);
      gone = removeCgroupTree(c);
    }
    if (!gone) problems.push(`cgroup left: ${c}`);
  }
  // CNI's result cache is host-wide (/var/lib/cni/results/<network>-<container>-<if>).
  const results = '/var/lib/cni/results';
  for (const f of existsSync(results) ? readdirSync(results) : []) {
    if (f.startsWith(`${r.runName}-`)) await rm(join(results, f), { force: true });
  }
  // The kubelet links each container's log from /var/log/containers, whatever podLogsDir says.
  for (const f of existsSync('/var/log/containers') ? readdirSync('/var/log/containers') : []) {
    const p = join('/var/log/containers', f);
    try {
      if (readlinkSync(p).startsWith(`${r.dir}/`)) await unlink(p);
    } catch {
      // Not a link, or gone.
    }
  }
  if (mounts.length === 0) await rm(r.dir, { recursive: true, force: true });
  return problems;
}
