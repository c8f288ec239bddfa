/**
 * The owner record of a real node run (real-node.ts): written before the run creates anything, so
 * a run killed at any point (SIGKILL, a jest timeout, a CI cancel) can be cleaned up by a later one
 * (node-janitor.ts). It names the owner process, the run's own names (directory, cgroup, CNI
 * network) and what the run must put back on the host: the original values of the sysctls the
 * kubelet sets, and the host paths the kubelet creates that did not exist before.
 *
 * A record is trusted with deletions, so parsing refuses anything outside what a run can create:
 * the directory must be the record's own sibling `ptnode-<name>-<id>` in the temp dir, host paths
 * one of KUBELET_HOST_PATHS, sysctls one of KUBELET_SYSCTLS with an integer value.
 */
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

/**
 * Host sysctls the kubelet sets (container_manager_linux.go's setupKernelTunables) unless
 * protectKernelDefaults makes it refuse to start instead.
 */
export const KUBELET_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
] as const;
export type KubeletSysctl = (typeof KUBELET_SYSCTLS)[number];

/** Host paths the kubelet creates whatever its flags say. */
export const KUBELET_HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/log/containers',
  '/var/log/pods',
  '/var/lib/cni',
] as const;
export type KubeletHostPath = (typeof KUBELET_HOST_PATHS)[number];

/** `ptnode-<node name>-<6 hex>`: the run's directory, cgroup and CNI network name alike. */
export const RUN_NAME_PATTERN = /^ptnode-([a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?)-([0-9a-f]{6})$/;
const RECORD_SUFFIX = '.owner.json';

export interface HostOriginals {
  /** Sysctl (as a /proc/sys path) → the value before any kubelet of these runs changed it. */
  sysctls: Partial<Record<KubeletSysctl, string>>;
  /** Host paths that did not exist before: removed when the last run is gone. */
  absentPaths: KubeletHostPath[];
}

export interface NodeRecord extends HostOriginals {
  /** The owner process, and its start time (field 22 of /proc/<pid>/stat) against pid reuse. */
  pid: number;
  startTime: string | null;
  /** `ptnode-<name>-<id>`: the cgroup under every hierarchy, the CNI network. */
  runName: string;
  /** `<tmpdir>/<runName>`: config, state, logs, mounts of containerd and the kubelet. */
  dir: string;
}

export class NodeRecordError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    detail: string,
  ) {
    super(`real node owner record ${file}: ${field}: ${detail}`);
    this.name = 'NodeRecordError';
  }
}

export function recordPath(dir: string): string {
  return `${dir}${RECORD_SUFFIX}`;
}

/** The run name of a record file in `tmpdir()` (`ptnode-a-0-1a2b3c.owner.json`), if it is one. */
export function runNameOfRecordFile(fileName: string): string | undefined {
  if (!fileName.endsWith(RECORD_SUFFIX)) return undefined;
  const runName = fileName.slice(0, -RECORD_SUFFIX.length);
  return RUN_NAME_PATTERN.test(runName) ? runName : undefined;
}

export function runDirOf(runName: string): string {
  return join(tmpdir(), runName);
}

export function serializeRecord(r: NodeRecord): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

/**
 * Parses the record stored at `file`; throws NodeRecordError (one line, naming the field) on
 * anything malformed or outside the run's own paths.
 */
export function parseRecord(text: string, file: string): NodeRecord {
  const fail = (field: string, detail: string): never => {
    throw new NodeRecordError(file, field, detail);
  };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return fail('(json)', (err as Error).message.split('\n')[0] ?? 'unparsable');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('(json)', 'not an object');
  const o = raw as Record<string, unknown>;

  const pid = o.pid;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0)
    return fail('pid', 'not a positive integer');
  const startTime = o.startTime;
  if (startTime !== null && (typeof startTime !== 'string' || !/^\d+$/.test(startTime)))
    return fail('startTime', 'not digits or null');

  const fileRun = runNameOfRecordFile(basename(file));
  if (fileRun === undefined) return fail('(file)', 'not named ptnode-<name>-<id>.owner.json');
  if (o.runName !== fileRun) return fail('runName', `not ${fileRun}, the record's own name`);
  // The directory is the record's sibling of the same name: nothing else may ever be removed.
  const expectedDir = join(dirname(file), fileRun);
  if (o.dir !== expectedDir) return fail('dir', `not ${expectedDir}`);

  const sysctls: Partial<Record<KubeletSysctl, string>> = {};
  if (typeof o.sysctls !== 'object' || o.sysctls === null || Array.isArray(o.sysctls))
    return fail('sysctls', 'not an object');
  for (const [name, value] of Object.entries(o.sysctls)) {
    if (!(KUBELET_SYSCTLS as readonly string[]).includes(name))
      return fail(`sysctls.${name}`, 'not a sysctl the kubelet sets');
    if (typeof value !== 'string' || !/^-?\d+$/.test(value)) return fail(`sysctls.${name}`, 'not an integer');
    sysctls[name as KubeletSysctl] = value;
  }

  if (!Array.isArray(o.absentPaths)) return fail('absentPaths', 'not an array');
  const absentPaths: KubeletHostPath[] = [];
  for (const p of o.absentPaths as unknown[]) {
    if (typeof p !== 'string' || !(KUBELET_HOST_PATHS as readonly string[]).includes(p))
      return fail('absentPaths', `${JSON.stringify(p)} is not one of ${KUBELET_HOST_PATHS.join(', ')}`);
    absentPaths.push(p as KubeletHostPath);
  }
  return { pid, startTime, runName: fileRun, dir: expectedDir, sysctls, absentPaths };
}
