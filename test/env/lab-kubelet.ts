/**
 * A "lab kubelet": runs the pods of a real API server inside NAT-lab network namespaces, one pod per
 * lab host, every container of the pod as a host process in that namespace (the host's address is
 * the pod IP). It plays the scheduler (binds pending pods to Nodes named after the hosts), the
 * kubelet (volumes, env, init containers and native sidecars, restarts, probes, status, deletion)
 * and `kubectl port-forward`/`exec` (process-level: see kubelet/forward.ts). Images are host
 * programs: see kubelet/images.ts. The modules under kubelet/ each do one of those jobs; this file
 * is the loop that ties them to the API.
 *
 * Not a kubelet: no cgroups, no image pulls, no root filesystem (containers see the host's files,
 * plus their volumes in a private mount namespace), no service account tokens, no DNS, no
 * Services (ClusterIPs do not route), one pod per host.
 */
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import type { Lab, LabHost } from '../lab/index.js';
import type { ControlPlane } from './control-plane.js';
import { KubeApi } from './kubelet/api.js';
import { defaultImages, type ImageInit, type ImageSpec, toImageSpec } from './kubelet/images.js';
import { HEARTBEAT_MS, heartbeat, nodeNameFor, registerNode, unregisterNode } from './kubelet/nodes.js';
import { PodWorker } from './kubelet/pod-worker.js';

export type { ImageInit, ImageSpec } from './kubelet/images.js';

export interface LabKubeletOptions {
  /** Cluster name for logs and Node names (`<name>-<host>`), e.g. 'a'. */
  name: string;
  cp: ControlPlane;
  lab: Lab;
  /** Lab hosts this cluster's pods may run on (lab.host(site, i), lab.relay(i)); one pod per host. */
  nodes: LabHost[];
  /** Picks a host for a pending pod; default: the first free one. */
  place?: (pod: V1Pod, free: LabHost[]) => LabHost | undefined;
  /** Namespaces whose pods to run; default: all but kube-system. */
  namespaces?: string[];
  /**
   * Image repository (`redis`, `ghcr.io/peertunnel/peertunnel`) → its ENTRYPOINT as an argv (args
   * are appended), or an ImageSpec; merged over the defaults (kubelet/images.ts).
   */
  imageCommands?: Record<string, ImageInit>;
  /** API poll interval. @default 300 */
  pollMs?: number;
  /** Probe periods are capped at this (tests need not wait a 10 s default period). @default 2000 */
  probePeriodCapMs?: number;
  /** terminationGracePeriodSeconds is capped at this. @default 5000 */
  terminationGraceCapMs?: number;
  /** Longest restart back-off. @default 10000 */
  maxBackoffMs?: number;
  /** Where log lines go. @default none (set LAB_KUBELET_LOG=1 for stderr) */
  log?: (line: string) => void;
}

export interface RunningPod {
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  /** Its network namespace; host.ip is the pod IP. */
  readonly host: LabHost;
  /** 127.0.0.1:port on this host forwarded to the sidecar's admin port (container port `pt-admin`). */
  readonly admin: string | undefined;
  /** Like kubectl port-forward: 127.0.0.1:<free> here → the pod's 127.0.0.1:port. */
  portForward(port: number): Promise<string>;
  /** Like kubectl exec: runs in the container's network and mount namespaces, as its user, with its env. */
  exec(
    container: string,
    argv: string[],
    opts?: { input?: string; timeoutMs?: number; env?: Record<string, string> },
  ): Promise<{ stdout: string; stderr: string; code: number | null }>;
  /** Last output of a container (every run of it), for failure messages. */
  output(container: string): string;
}

export interface LabKubelet {
  readonly name: string;
  /** Node name of each host. */
  nodeName(host: LabHost): string;
  /** Pods that have a host and have not been terminated. */
  pods(): RunningPod[];
  /**
   * The first pod of `namespace` matching `match` that runs here (and is Ready in the API, unless
   * `ready: false`). Rejects after `timeoutMs` (default 60 s) with what the candidates are doing.
   */
  waitForPod(
    namespace: string,
    match: (p: V1Pod) => boolean,
    opts?: { ready?: boolean; timeoutMs?: number },
  ): Promise<RunningPod>;
  /** Stops every container and port-forward, deletes the Nodes, removes the run dir. Idempotent. */
  stop(): Promise<void>;
}

const REPO_ROOT = resolve(
  import.meta.dirname,
  '..',
  '..',
  import.meta.dirname.includes('/dist/') ? '..' : '.',
);
const DIR_PREFIX = 'ptkubelet-';

/** Removes run dirs of lab kubelets whose process is gone (killed before stop()). */
async function reapStaleDirs(): Promise<void> {
  for (const name of (await readdir(tmpdir()).catch(() => [])).filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name);
    const pid = Number.parseInt(await readFile(join(dir, 'owner.pid'), 'utf8').catch(() => ''), 10);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') await rm(dir, { recursive: true, force: true });
    }
  }
}

class RunningPodView implements RunningPod {
  constructor(
    private readonly w: PodWorker,
    readonly host: LabHost,
  ) {}
  get namespace(): string {
    return this.w.namespace;
  }
  get name(): string {
    return this.w.name;
  }
  get uid(): string {
    return this.w.uid;
  }
  get admin(): string | undefined {
    return this.w.admin;
  }
  portForward(port: number): Promise<string> {
    return this.w.portForward(port);
  }
  exec(
    container: string,
    argv: string[],
    opts?: { input?: string; timeoutMs?: number; env?: Record<string, string> },
  ): Promise<{ stdout: string; stderr: string; code: number | null }> {
    return this.w.exec(container, argv, opts);
  }
  output(container: string): string {
    return this.w.output(container);
  }
}

interface Slot {
  readonly worker: PodWorker;
  readonly view: RunningPodView;
  /** Serialises this pod's syncs and its termination. */
  chain: Promise<void>;
  /** A sync is queued and has not begun: the next tick need not queue another. */
  queued: boolean;
  terminating: boolean;
  /** The last error of a step, so a repeating one is logged once. */
  lastError: string | undefined;
}

class LabKubeletImpl implements LabKubelet {
  readonly name: string;
  private readonly api: KubeApi;
  private readonly images: Record<string, ImageSpec>;
  private readonly nodeNames = new Map<LabHost, string>();
  private readonly byNode = new Map<string, LabHost>();
  /** Pods by uid. */
  private readonly slots = new Map<string, Slot>();
  /** Hosts taken by a pod that is bound but not started yet (uid). */
  private readonly reserved = new Map<LabHost, string>();
  private readonly unschedulable = new Set<string>();
  private lastPods: V1Pod[] = [];
  private loop: Promise<void> | undefined;
  private stopped = false;
  private stopping: Promise<void> | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lastError = '';
  private readonly log: (line: string) => void;

  constructor(
    private readonly o: LabKubeletOptions,
    private readonly dir: string,
  ) {
    this.name = o.name;
    this.api = new KubeApi(o.cp);
    this.images = { ...defaultImages(REPO_ROOT) };
    for (const [repo, init] of Object.entries(o.imageCommands ?? {})) this.images[repo] = toImageSpec(init);
    const sink =
      o.log ??
      (process.env.LAB_KUBELET_LOG === '1' ? (l: string) => process.stderr.write(`${l}\n`) : undefined);
    this.log = (line) => sink?.(`[lab-kubelet ${o.name}] ${line}`);
    for (const host of o.nodes) {
      const node = nodeNameFor(o.name, host);
      this.nodeNames.set(host, node);
      this.byNode.set(node, host);
    }
  }

  nodeName(host: LabHost): string {
    const n = this.nodeNames.get(host);
    if (n === undefined) throw new Error(`host ${host.name} is not a node of cluster ${this.name}`);
    return n;
  }

  async start(): Promise<void> {
    for (const [host, node] of this.nodeNames) await registerNode(this.api, this.name, host, node);
    this.heartbeatTimer = setInterval(() => {
      for (const [host, node] of this.nodeNames) {
        heartbeat(this.api, host, node).catch((err: unknown) =>
          this.log(`heartbeat ${node}: ${String(err)}`),
        );
      }
    }, HEARTBEAT_MS);
    await this.tick();
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      await sleep(this.o.pollMs ?? 300);
      if (this.stopped) break;
      try {
        await this.tick();
        this.lastError = '';
      } catch (err) {
        // The API may be restarting; the next tick tries again. Log each new error once.
        const text = err instanceof Error ? err.message : String(err);
        if (text !== this.lastError) this.log(`tick: ${text}`);
        this.lastError = text;
      }
    }
  }

  private watched(pod: V1Pod): boolean {
    const ns = pod.metadata?.namespace ?? '';
    return this.o.namespaces === undefined ? ns !== 'kube-system' : this.o.namespaces.includes(ns);
  }

  private freeHosts(): LabHost[] {
    const busy = new Set<LabHost>(this.reserved.keys());
    for (const s of this.slots.values()) busy.add(s.view.host);
    return this.o.nodes.filter((h) => !busy.has(h));
  }

  /** One look at the API: schedule, start, sync, terminate. */
  private async tick(): Promise<void> {
    const list = await this.api.listPods();
    const pods = (list?.items ?? []).filter((p) => this.watched(p));
    this.lastPods = pods;
    const seen = new Set<string>();
    for (const pod of pods) {
      const uid = pod.metadata?.uid ?? '';
      seen.add(uid);
      const nodeName = pod.spec?.nodeName;
      if (nodeName === undefined || nodeName === '') {
        if (pod.metadata?.deletionTimestamp === undefined) await this.schedule(pod);
        continue;
      }
      const host = this.byNode.get(nodeName);
      if (host === undefined) continue; // another cluster's (or kubelet's) node
      const slot = this.slots.get(uid);
      if (pod.metadata?.deletionTimestamp !== undefined) {
        this.beginTermination(pod, slot);
        continue;
      }
      if (slot !== undefined) {
        slot.worker.pod = pod;
        if (!slot.terminating) this.enqueue(slot, () => slot.worker.sync());
        continue;
      }
      if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') continue;
      const other = [...this.slots.values()].find((s) => s.view.host === host);
      if (other !== undefined) continue; // one pod per host: wait until that one is gone
      this.reserved.delete(host);
      this.startPod(pod, host, nodeName);
    }
    // Pods gone from the API (deleted with grace 0 by someone else): kill their containers.
    for (const [uid, slot] of this.slots) {
      if (!seen.has(uid)) this.finish(slot, false);
    }
    for (const [host, uid] of this.reserved) if (!seen.has(uid)) this.reserved.delete(host);
    for (const uid of this.unschedulable) if (!seen.has(uid)) this.unschedulable.delete(uid);
  }

  private async schedule(pod: V1Pod): Promise<void> {
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid ?? '';
    const free = this.freeHosts();
    const host = free.length === 0 ? undefined : (this.o.place ?? ((_p, f) => f[0]))(pod, free);
    if (host === undefined || !free.includes(host)) {
      if (!this.unschedulable.has(uid)) {
        const message = `0/${this.o.nodes.length} nodes are available: ${free.length === 0 ? 'every lab host runs a pod (one pod per host)' : 'the placement function chose none of the free hosts'}.`;
        await this.api.patchPodStatus(ns, name, uid, {
          phase: 'Pending',
          conditions: [
            {
              type: 'PodScheduled',
              status: 'False',
              reason: 'Unschedulable',
              message,
              lastTransitionTime: new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
              lastProbeTime: null,
            },
          ],
        });
        this.unschedulable.add(uid);
        this.log(`${ns}/${name}: unschedulable (${message})`);
      }
      return;
    }
    const node = this.nodeName(host);
    if (await this.api.bind(ns, name, node)) {
      this.reserved.set(host, uid);
      this.unschedulable.delete(uid);
      this.log(`${ns}/${name}: bound to ${node}`);
    }
  }

  private startPod(pod: V1Pod, host: LabHost, nodeName: string): void {
    const uid = pod.metadata?.uid ?? '';
    const worker = new PodWorker(pod, {
      api: this.api,
      images: this.images,
      host,
      nodeName,
      dir: join(this.dir, uid),
      probePeriodCapMs: this.o.probePeriodCapMs ?? 2_000,
      maxBackoffMs: this.o.maxBackoffMs ?? 10_000,
      log: this.log,
    });
    const slot: Slot = {
      worker,
      view: new RunningPodView(worker, host),
      chain: Promise.resolve(),
      queued: false,
      terminating: false,
      lastError: undefined,
    };
    this.slots.set(uid, slot);
    this.log(`${worker.namespace}/${worker.name}: starting on ${host.name} (${host.ip})`);
    this.enqueue(slot, () => worker.sync());
  }

  /** Runs `step` after the pod's previous step; a step that is already queued is not queued twice. */
  private enqueue(slot: Slot, step: () => Promise<void>): void {
    if (slot.queued) return;
    slot.queued = true;
    slot.chain = slot.chain
      .then(() => {
        slot.queued = false;
        return step();
      })
      .then(() => {
        slot.lastError = undefined;
      })
      .catch((err: unknown) => {
        slot.queued = false;
        // A step that keeps failing (the API refusing a status) is logged once, not every tick.
        const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
        if (text !== slot.lastError) this.log(`${slot.worker.namespace}/${slot.worker.name}: ${text}`);
        slot.lastError = text;
      });
  }

  private graceMs(pod: V1Pod): number {
    const seconds = pod.metadata?.deletionGracePeriodSeconds ?? pod.spec?.terminationGracePeriodSeconds ?? 30;
    return Math.min(seconds * 1000, this.o.terminationGraceCapMs ?? 5_000);
  }

  /** deletionTimestamp: stop the containers within the grace period, then delete the pod for good. */
  private beginTermination(pod: V1Pod, slot: Slot | undefined): void {
    const ns = pod.metadata?.namespace ?? '';
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid ?? '';
    if (slot === undefined) {
      // Bound but never started here (or already finished): nothing runs, delete it at once.
      if (!this.deleting.has(uid)) {
        this.deleting.add(uid);
        void this.api
          .deletePodNow(ns, name, uid)
          .catch((err: unknown) => this.log(`${ns}/${name}: delete: ${String(err)}`))
          .finally(() => this.deleting.delete(uid));
      }
      return;
    }
    if (slot.terminating) return;
    slot.terminating = true;
    const grace = this.graceMs(pod);
    this.log(`${ns}/${name}: terminating (grace ${grace} ms)`);
    slot.chain = slot.chain.then(async () => {
      await slot.worker.terminate(grace, true);
      this.slots.delete(uid);
      await rm(join(this.dir, uid), { recursive: true, force: true });
      await this.api
        .deletePodNow(ns, name, uid)
        .catch((err: unknown) => this.log(`${ns}/${name}: delete: ${String(err)}`));
      this.log(`${ns}/${name}: deleted`);
    });
  }

  private readonly deleting = new Set<string>();

  /** The pod is gone from the API: kill everything of it now. */
  private finish(slot: Slot, reportStatus: boolean): void {
    if (slot.terminating) return;
    slot.terminating = true;
    const uid = slot.worker.uid;
    this.log(`${slot.worker.namespace}/${slot.worker.name}: gone from the API; killing its containers`);
    slot.chain = slot.chain.then(async () => {
      await slot.worker.terminate(0, reportStatus);
      this.slots.delete(uid);
      await rm(join(this.dir, uid), { recursive: true, force: true });
    });
  }

  pods(): RunningPod[] {
    return [...this.slots.values()].filter((s) => !s.terminating).map((s) => s.view);
  }

  async waitForPod(
    namespace: string,
    match: (p: V1Pod) => boolean,
    opts: { ready?: boolean; timeoutMs?: number } = {},
  ): Promise<RunningPod> {
    const wantReady = opts.ready ?? true;
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const slot of this.slots.values()) {
        const pod = slot.worker.pod;
        if (slot.terminating || slot.worker.namespace !== namespace || !match(pod)) continue;
        if (!wantReady || slot.worker.ready) {
          if (!wantReady) return slot.view;
          // Ready in the API too, not only in our head: the test may read it next.
          const api = this.lastPods.find((p) => p.metadata?.uid === slot.worker.uid);
          if (api?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
            return slot.view;
        }
      }
      if (this.stopped)
        throw new Error(`lab kubelet ${this.name} stopped while waiting for a pod in ${namespace}`);
      if (Date.now() > deadline) throw new Error(this.describeWait(namespace, match, timeoutMs, wantReady));
      await sleep(100);
    }
  }

  private describeWait(
    namespace: string,
    match: (p: V1Pod) => boolean,
    timeoutMs: number,
    ready: boolean,
  ): string {
    const lines = [
      `lab kubelet ${this.name}: no ${ready ? 'Ready ' : ''}pod in ${namespace} matched within ${timeoutMs} ms`,
    ];
    for (const pod of this.lastPods.filter((p) => p.metadata?.namespace === namespace)) {
      const cs = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])];
      lines.push(
        `  ${pod.metadata?.name} (matches: ${match(pod)}) node=${pod.spec?.nodeName ?? '-'} phase=${pod.status?.phase ?? '-'} ` +
          `conditions=${JSON.stringify(pod.status?.conditions?.map((c) => `${c.type}=${c.status}${c.reason ? `(${c.reason})` : ''}`))} ` +
          `containers=${JSON.stringify(cs.map((c) => ({ [c.name]: c.state, restarts: c.restartCount })))}`,
      );
      const slot = this.slots.get(pod.metadata?.uid ?? '');
      for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
        const out = slot?.worker.output(c.name).trim();
        if (out) lines.push(`  --- ${c.name} output (last 1500 chars) ---\n${out.slice(-1500)}`);
      }
    }
    return lines.join('\n');
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    await this.loop?.catch(() => {});
    const slots = [...this.slots.values()];
    await Promise.all(
      slots.map(async (slot) => {
        await slot.chain.catch(() => {});
        if (!slot.terminating) await slot.worker.terminate(2_000, false);
      }),
    );
    this.slots.clear();
    for (const node of this.nodeNames.values()) {
      await unregisterNode(this.api, node).catch((err: unknown) =>
        this.log(`unregister ${node}: ${String(err)}`),
      );
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Starts the kubelet: registers the Nodes, then polls the API until `stop()`. */
export async function startLabKubelet(opts: LabKubeletOptions): Promise<LabKubelet> {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(opts.name)) {
    throw new Error(`lab kubelet name "${opts.name}" must be a DNS label (it prefixes Node names)`);
  }
  await reapStaleDirs();
  const dir = await mkdtemp(join(tmpdir(), `${DIR_PREFIX}${opts.name}-`));
  // Non-root containers must reach their volumes and data dirs below it.
  await chmod(dir, 0o755);
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const kubelet = new LabKubeletImpl(opts, dir);
  try {
    await kubelet.start();
  } catch (err) {
    await kubelet.stop().catch(() => {});
    throw err;
  }
  return kubelet;
}
