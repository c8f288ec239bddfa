/**
 * A real node run whose process is SIGKILLed (a jest timeout, a CI cancel) leaves its pods, the
 * containerd shims, mounts, cgroups, the sysctls the kubelet set and the host paths it made: the
 * janitor (test/env/node-janitor.ts, run at every real node's start) removes them from the run's
 * owner record, and leaves a live run alone. The owner is a child process (real-node-owner.ts):
 * a lab site, a control plane, a real node and a pod with a memory-backed emptyDir.
 *
 * Needs root and the Kubernetes tools (like real-node.test.ts): skipped loudly otherwise.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { startControlPlane } from '../env/control-plane.js';
import { type BuiltImage, ensureImages } from '../env/images.js';
import { cleanStaleNodes } from '../env/node-janitor.js';
import { mountsUnder, pidsMentioning } from '../env/node-leftovers.js';
import { KUBELET_HOST_PATHS, parseRecord, recordPath } from '../env/node-record.js';
import { startRealNode } from '../env/real-node.js';
import { requireTools, TOOLS_TIMEOUT_MS } from '../env/skip.js';
import { ensureNodeTools, type NodeToolPaths, type ToolPaths } from '../env/tools.js';
import { cleanStaleLabs, createLab, describeLab } from './index.js';

const SYSCTLS = ['vm/overcommit_memory', 'kernel/panic', 'kernel/panic_on_oops'] as const;
const sysctls = (): Record<string, string> =>
  Object.fromEntries(SYSCTLS.map((s) => [s, readFileSync(join('/proc/sys', s), 'utf8').trim()]));
const OWNER = new URL('./real-node-owner.ts', import.meta.url).pathname;
const HOOK = new URL('./ts-resolve.ts', import.meta.url).pathname;

interface Owner {
  child: ChildProcess;
  dir: string;
  output: () => string;
}

/** Starts real-node-owner.ts with `init` and waits for its `READY {"dir":…}` line. */
function startOwner(init: object, timeoutMs: number): Promise<Owner> {
  // Killed with this process too (a jest timeout here): then it is a dead run like the one tested.
  const child = spawn(
    'setpriv',
    [
      '--pdeathsig',
      'KILL',
      '--',
      process.execPath,
      '--experimental-transform-types',
      '--disable-warning=ExperimentalWarning',
      '--import',
      HOOK,
      OWNER,
      JSON.stringify(init),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const output = () => out.slice(-8000);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`owner not ready after ${timeoutMs} ms:\n${output()}`));
    }, timeoutMs);
    child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
    });
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /^READY (.*)$/m.exec(out);
      if (m?.[1] !== undefined) {
        clearTimeout(timer);
        resolve({ child, dir: (JSON.parse(m[1]) as { dir: string }).dir, output });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`owner exited (${signal ?? code}) before ready:\n${output()}`));
    });
  });
}

async function sigkill(owner: Owner | undefined): Promise<void> {
  const child = owner?.child;
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** Processes whose cgroup (any hierarchy) is the run's, or whose command line names its directory. */
function processesOf(runName: string, dir: string): number[] {
  const inCgroup = readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cgroup`, 'utf8').includes(`/${runName}/`);
      } catch {
        return false;
      }
    })
    .map(Number);
  return [...new Set([...inCgroup, ...pidsMentioning(`${dir}/`)])];
}

const cgroupDirsOf = (runName: string): string[] =>
  readdirSync('/sys/fs/cgroup')
    .map((h) => join('/sys/fs/cgroup', h, runName))
    .filter((p) => existsSync(p));

describeLab('real node janitor: a SIGKILLed run is cleaned from its owner record', () => {
  let init: { mode: 'node'; tools: ToolPaths; nodeTools: NodeToolPaths; pause: BuiltImage } | undefined;
  let killed: Owner | undefined;
  let live: Owner | undefined;
  const before = sysctls();

  beforeAll(async () => {
    const tools = await requireTools('the real node janitor test');
    if (tools === undefined) return;
    const nodeTools = await ensureNodeTools();
    const images = await ensureImages(['pause']);
    init = { mode: 'node', tools, nodeTools, pause: images.pause as BuiltImage };
  }, TOOLS_TIMEOUT_MS);

  afterAll(async () => {
    await sigkill(killed);
    await sigkill(live);
    // Whatever the test did not get to: this janitor, then the lab's (the owner's namespaces).
    await cleanStaleNodes();
    await cleanStaleLabs();
    expect(sysctls()).toEqual(before);
  }, 120_000);

  it('a run that stops normally removes its record with the rest, and restores the host itself', async () => {
    if (init === undefined) return;
    const lab = await createLab({ relays: 0, sites: [{ name: 'a', nat: 'eim', hosts: 1 }] });
    const cp = await startControlPlane({ tools: init.tools, egressProxy: true });
    try {
      const node = await startRealNode({
        name: 'stopped-0',
        cp,
        host: lab.host('a', 0),
        podCidr: '198.19.8.0/24',
        tools: init.nodeTools,
        images: [init.pause],
      });
      expect(parseRecord(readFileSync(recordPath(node.dir), 'utf8'), recordPath(node.dir)).pid).toBe(
        process.pid,
      );
      expect(sysctls()).not.toEqual(before);
      await node.stop();
      expect(existsSync(recordPath(node.dir))).toBe(false);
      expect(existsSync(node.dir)).toBe(false);
      expect(cgroupDirsOf(basename(node.dir))).toEqual([]);
      expect(sysctls()).toEqual(before);
    } finally {
      await cp.stop();
      await lab.stop();
    }
  }, 180_000);

  it('kills the pods and shims, unmounts, removes cgroups and directories, restores the sysctls once no run lives', async () => {
    if (init === undefined) return;
    const t0 = Date.now();
    killed = await startOwner(init, 240_000);
    const { dir } = killed;
    const runName = basename(dir);
    process.stderr.write(`[janitor] owner ready in ${Date.now() - t0} ms: ${dir}\n`);
    const recordText = readFileSync(recordPath(dir), 'utf8');
    const record = parseRecord(recordText, recordPath(dir));
    expect(record.sysctls).toMatchObject(before);
    const created = record.absentPaths.filter((p) => existsSync(p));

    live = await startOwner({ mode: 'record' }, 30_000);
    const liveRecord = readFileSync(recordPath(live.dir), 'utf8');
    // A run started while another lives takes the host as it was before that one, from its record.
    expect(parseRecord(liveRecord, recordPath(live.dir)).sysctls).toEqual(record.sysctls);

    await sigkill(killed);
    // What a killed run leaves: the pod (pause) and its shim, mounts, cgroups, the kubelet's sysctls.
    const changed = sysctls();
    expect(changed).not.toEqual(before);
    expect(processesOf(runName, dir).length).toBeGreaterThan(0);
    expect(mountsUnder(dir).length).toBeGreaterThan(0);
    expect(cgroupDirsOf(runName).length).toBeGreaterThan(0);
    process.stderr.write(
      `[janitor] left by the killed run: ${processesOf(runName, dir).length} processes, ` +
        `${mountsUnder(dir).length} mounts, ${cgroupDirsOf(runName).length} cgroups, sysctls ` +
        `${JSON.stringify(changed)}, created ${created.join(' ')}\n`,
    );

    const t1 = Date.now();
    const cleaned = await cleanStaleNodes();
    process.stderr.write(`[janitor] dead run cleaned in ${Date.now() - t1} ms\n`);
    expect(processesOf(runName, dir)).toEqual([]);
    expect(mountsUnder(dir)).toEqual([]);
    expect(cgroupDirsOf(runName)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(recordPath(dir))).toBe(false);
    expect(cleaned).toEqual([runName]);
    // The live run: untouched, and so are the host settings it also holds.
    expect(readFileSync(recordPath(live.dir), 'utf8')).toBe(liveRecord);
    expect(existsSync(live.dir)).toBe(true);
    expect(sysctls()).toEqual(changed);

    // The last run dies too: now the host goes back to the recorded originals.
    await sigkill(live);
    const cleanedLast = await cleanStaleNodes();
    expect(sysctls()).toEqual(Object.fromEntries(SYSCTLS.map((s) => [s, record.sysctls[s]])));
    expect(sysctls()).toEqual(before);
    expect(created.filter((p) => existsSync(p))).toEqual([]);
    expect(KUBELET_HOST_PATHS.filter((p) => record.absentPaths.includes(p) && existsSync(p))).toEqual([]);
    expect(existsSync(live.dir)).toBe(false);
    expect(existsSync(recordPath(live.dir))).toBe(false);
    expect(cleanedLast).toEqual([basename(live.dir)]);
    process.stderr.write(`[janitor] whole test body ${Date.now() - t0} ms\n`);
  }, 360_000);
});
