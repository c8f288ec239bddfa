/**
 * Teardown: kill what runs in a lab's namespaces, delete them, and find the leftovers of lab runs
 * whose owner process is gone (a crashed or killed test run).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './exec.js';
import { LAB_NAMESPACE_PATTERN } from './plan.js';

/** The run's private directory: owner record, miniupnpd config/lease/pid files, logs. */
export function runDir(runId: string): string {
  return join(tmpdir(), `ptlab-${runId}`);
}

const RUN_DIR_PATTERN = /^ptlab-(\d+-[0-9a-f]{4})$/;

interface OwnerRecord {
  pid: number;
  startTime: string | undefined;
}

/** Field 22 of /proc/<pid>/stat: tells a live owner from an unrelated process that reused its pid. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19];
  } catch {
    return undefined;
  }
}

export function writeOwnerRecord(runId: string): void {
  const record: OwnerRecord = { pid: process.pid, startTime: processStartTime(process.pid) };
  writeFileSync(join(runDir(runId), 'owner.json'), JSON.stringify(record));
}

/** Whether the process that made run `runId` still lives. */
export function isRunAlive(runId: string): boolean {
  const pid = Number(runId.split('-')[0]);
  const startTime = processStartTime(pid);
  if (startTime === undefined) {
    return false;
  }
  try {
    const record = JSON.parse(
      readFileSync(join(runDir(runId), 'owner.json'), 'utf8'),
    ) as Partial<OwnerRecord>;
    return record.pid !== pid || record.startTime === undefined || record.startTime === startTime;
  } catch {
    // No record (crashed before writing it, or /tmp was cleaned): the pid alone decides.
    return true;
  }
}

function parseNamespaceList(output: string): string[] {
  return output
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => LAB_NAMESPACE_PATTERN.test(name));
}

/** Lab namespaces on this machine (any run). */
export async function listLabNamespaces(): Promise<string[]> {
  const result = await run('ip', ['netns', 'list'], { timeoutMs: 10_000 });
  return parseNamespaceList(result.stdout);
}

/** Pids of the processes whose network namespace is `ns`. */
export async function namespacePids(ns: string): Promise<number[]> {
  const result = await run('ip', ['netns', 'pids', ns], { timeoutMs: 10_000 });
  return result.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

function killPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Kill everything inside `namespaces` (every such process was started by the lab, directly or as a
 * child of something it started), then delete the namespaces. Returns what could not be done.
 */
export async function destroyNamespaces(namespaces: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  const existing = new Set(await listLabNamespaces());
  const present = namespaces.filter((ns) => existing.has(ns));
  for (const ns of present) {
    for (const pid of await namespacePids(ns)) {
      killPid(pid, 'SIGKILL');
    }
  }
  // SIGKILL is not instantaneous: wait (bounded) until no process is left in any of them.
  const deadline = Date.now() + 5_000;
  for (const ns of present) {
    let pids = await namespacePids(ns);
    while (pids.length > 0 && Date.now() < deadline) {
      await sleep(50);
      pids = await namespacePids(ns);
    }
    if (pids.length > 0) {
      problems.push(`processes ${pids.join(',')} still in ${ns}`);
    }
  }
  // Hosts and routers first, the backbone last: deleting a namespace deletes its veth ends.
  for (const ns of [...present].reverse()) {
    const result = await run('ip', ['netns', 'delete', ns], { timeoutMs: 10_000 });
    if (result.code !== 0) {
      problems.push(`ip netns delete ${ns}: ${result.stderr.trim()}`);
    }
  }
  return problems;
}

/** The same, synchronously: for a `process.on('exit')` hook, where nothing async runs. */
export function destroyNamespacesSync(namespaces: readonly string[]): void {
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 });
  const existing = new Set(parseNamespaceList(list.stdout ?? ''));
  const present = namespaces.filter((ns) => existing.has(ns));
  for (const ns of present) {
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', timeout: 10_000 });
    for (const line of (pids.stdout ?? '').split('\n')) {
      const pid = Number(line.trim());
      if (Number.isInteger(pid) && pid > 0) {
        killPid(pid, 'SIGKILL');
      }
    }
  }
  for (const ns of [...present].reverse()) {
    spawnSync('ip', ['netns', 'delete', ns], { timeout: 10_000 });
  }
}

/**
 * Remove the namespaces and run directories of lab runs whose owner process is gone. Live runs
 * (this process's, or another test run's on the same machine) are never touched.
 * Returns the run ids that were cleaned.
 */
export async function cleanStaleLabs(): Promise<string[]> {
  const byRun = new Map<string, string[]>();
  for (const ns of await listLabNamespaces()) {
    const runId = LAB_NAMESPACE_PATTERN.exec(ns)?.[1];
    if (runId !== undefined) {
      byRun.set(runId, [...(byRun.get(runId) ?? []), ns]);
    }
  }
  const cleaned: string[] = [];
  for (const [runId, namespaces] of byRun) {
    if (isRunAlive(runId)) {
      continue;
    }
    // Routers and hosts before the backbone: sort so `inet` comes first, then destroy reverses.
    namespaces.sort((a, b) => Number(b.endsWith('-inet')) - Number(a.endsWith('-inet')));
    const problems = await destroyNamespaces(namespaces);
    if (problems.length > 0) {
      process.stderr.write(`ptlab: stale run ${runId} not fully cleaned: ${problems.join('; ')}\n`);
    }
    const dir = runDir(runId);
    if (existsSync(dir)) {
      rmSync(dir, { recursive: true, force: true });
    }
    cleaned.push(runId);
  }
  // Run directories whose namespaces are already gone (a crash after teardown began).
  for (const entry of readdirSync(tmpdir())) {
    const runId = RUN_DIR_PATTERN.exec(entry)?.[1];
    if (runId !== undefined && !byRun.has(runId) && !isRunAlive(runId)) {
      rmSync(join(tmpdir(), entry), { recursive: true, force: true });
    }
  }
  return cleaned;
}
