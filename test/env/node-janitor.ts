/**
 * Owner records of real node runs (real-node.ts) and the janitor that uses them: a run whose process
 * was killed before its stop() (SIGKILL, a jest timeout, a CI cancel) is cleaned by
 * cleanStaleNodes() at the next real node's start, from its record (node-record.ts); what exactly
 * is removed is node-leftovers.ts. Host settings (the sysctls the kubelet sets, host paths it
 * creates) are shared by every run on the machine: put back only when no run is alive any more.
 * Iptables chains need nothing here: kube-proxy, the kubelet and the CNI bridge all run in the lab
 * host's network namespace, which the lab removes (cleanStaleLabs for a killed run).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeRunLeftovers } from './node-leftovers.js';
import {
  type HostOriginals,
  KUBELET_HOST_PATHS,
  KUBELET_SYSCTLS,
  type NodeRecord,
  NodeRecordError,
  parseRecord,
  recordPath,
  runDirOf,
  runNameOfRecordFile,
  serializeRecord,
} from './node-record.js';

/** Field 22 of /proc/<pid>/stat: tells a live owner from an unrelated process that reused its pid. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

export function isOwnerAlive(r: Pick<NodeRecord, 'pid' | 'startTime'>): boolean {
  const now = processStartTime(r.pid);
  return now !== undefined && (r.startTime === null || r.startTime === now);
}

/** Every parsable record in the temp dir; a malformed one is reported (one line) and left alone. */
export function readRecords(
  warn: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
  recordsDir: string = tmpdir(),
): NodeRecord[] {
  const out: NodeRecord[] = [];
  for (const f of readdirSync(recordsDir)) {
    if (runNameOfRecordFile(f) === undefined) continue;
    const file = join(recordsDir, f);
    try {
      out.push(parseRecord(readFileSync(file, 'utf8'), file));
    } catch (err) {
      if (err instanceof NodeRecordError) warn(`${err.message} (left alone)`);
      else if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

function readSysctl(name: string): string | undefined {
  try {
    return readFileSync(join('/proc/sys', name), 'utf8').trim();
  } catch {
    return undefined;
  }
}

function hostNow(): HostOriginals {
  const sysctls: HostOriginals['sysctls'] = {};
  for (const s of KUBELET_SYSCTLS) {
    const v = readSysctl(s);
    if (v !== undefined) sysctls[s] = v;
  }
  return { sysctls, absentPaths: KUBELET_HOST_PATHS.filter((p) => !existsSync(p)) };
}

/** Writes back what the kubelets changed; returns what had to be restored (for a log line). */
async function restoreHost(o: HostOriginals): Promise<string[]> {
  const restored: string[] = [];
  for (const [name, value] of Object.entries(o.sysctls)) {
    const now = readSysctl(name);
    if (now !== undefined && now !== value) {
      await writeFile(join('/proc/sys', name), value);
      restored.push(`${name.replaceAll('/', '.')}: ${now} -> ${value}`);
    }
  }
  for (const p of o.absentPaths) {
    if (existsSync(p)) {
      await rm(p, { recursive: true, force: true });
      restored.push(`removed ${p}`);
    }
  }
  return restored;
}

/** This process's runs: the host as it was before the first of them (or inherited), and how many. */
let hostState: { originals: HostOriginals; runs: number } | undefined;

/**
 * Starts a run: writes its owner record (before anything else exists), then makes its directory.
 * The host originals are this process's, else those of another run's record (a live run on this
 * machine changed the host already: its record holds what it was before), else the host's now.
 */
export async function beginRun(nodeName: string): Promise<NodeRecord> {
  const runName = `ptnode-${nodeName}-${randomBytes(3).toString('hex')}`;
  const dir = runDirOf(runName);
  if (hostState === undefined) {
    const other = readRecords()[0];
    hostState = {
      originals: other ? { sysctls: other.sysctls, absentPaths: other.absentPaths } : hostNow(),
      runs: 0,
    };
  }
  hostState.runs++;
  const record: NodeRecord = {
    pid: process.pid,
    startTime: processStartTime(process.pid) ?? null,
    runName,
    dir,
    ...hostState.originals,
  };
  writeFileSync(recordPath(dir), serializeRecord(record), { flag: 'wx' });
  await mkdir(dir);
  return record;
}

/**
 * Ends a run: the host is put back when it was this process's last run and no other process runs a
 * node, then the record goes (unless `keepRecord`: leftovers the janitor should try again once this
 * process is gone). Returns what was restored.
 */
export async function endRun(record: NodeRecord, opts: { keepRecord?: boolean } = {}): Promise<string[]> {
  let restored: string[] = [];
  if (hostState !== undefined && --hostState.runs <= 0) {
    const others = readRecords().filter((r) => r.pid !== process.pid && isOwnerAlive(r));
    if (others.length === 0) restored = await restoreHost(hostState.originals);
    hostState = undefined;
  }
  if (opts.keepRecord !== true) await rm(recordPath(record.dir), { force: true });
  return restored;
}

/**
 * Cleans the leftovers of real node runs whose owner process is gone; runs with a live owner (this
 * process's, another test process's) are left alone. The host settings are put back from the dead
 * runs' records only when no run is alive any more: a live one holds the same originals (beginRun)
 * and puts them back itself. Returns the run names cleaned.
 */
export async function cleanStaleNodes(
  log: (line: string) => void = (line) => process.stderr.write(`[real-node janitor] ${line}\n`),
  /** Where the records are: the temp dir, where beginRun writes them (another only in unit tests). */
  recordsDir: string = tmpdir(),
): Promise<string[]> {
  const records = readRecords(log, recordsDir);
  const dead = records.filter((r) => !isOwnerAlive(r));
  if (dead.length === 0) return [];
  const cleaned: string[] = [];
  const unfinished: string[] = [];
  for (const r of dead) {
    const problems = await removeRunLeftovers(r);
    if (problems.length > 0) {
      log(`run ${r.runName} of dead pid ${r.pid} not fully cleaned: ${problems.join('; ')}`);
      unfinished.push(r.runName);
    } else {
      cleaned.push(r.runName);
    }
  }
  if (!records.some(isOwnerAlive)) {
    const first = dead[0] as NodeRecord;
    const restored = await restoreHost(first);
    if (restored.length > 0) log(`restored host state of dead runs: ${restored.join('; ')}`);
  }
  // A record goes once its run is clean; an unfinished one is tried again by the next janitor.
  for (const r of dead) if (!unfinished.includes(r.runName)) await rm(recordPath(r.dir), { force: true });
  if (cleaned.length > 0) log(`cleaned runs of dead processes: ${cleaned.join(', ')}`);
  return cleaned;
}
