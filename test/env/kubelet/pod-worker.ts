/**
 * One pod on one lab host, from its first sync to its last: volumes, init containers (native
 * sidecars, restartPolicy Always, started first and kept running; classic ones run to completion
 * in order), then the regular containers; restarts with a bounded back-off; startup, readiness and
 * liveness probes; the pod's status in the API; port forwards; exec; termination.
 *
 * The kubelet (lab-kubelet.ts) calls `sync()` on every tick, one at a time per pod, and `terminate()`
 * once. Nothing here blocks a tick for long: processes and probes run on their own and only leave
 * their results in the container records, which the next sync turns into status.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { V1Container, V1Pod, V1Probe } from '@kubernetes/client-node';
import { ADMIN_ADDRESS_ANNOTATION } from '../../../operator/controller/sidecar-client.js';
import type { KubeApi } from './api.js';
import { ContainerConfigError, resolveContainerEnv } from './env.js';
import { HostForward, NamespaceSocket } from './forward.js';
import { containerArgv, DATA_DIR, DEFAULT_PATH, expandVars, findImage, type ImageSpec } from './images.js';
import { runProbe } from './probes.js';
import { ContainerOutput, ContainerProcess } from './process.js';
import { Conditions, type ContainerStateJson, containerStatus, kubeTime, terminatedOf } from './status.js';
import { containerMounts, makeVolume, mountPrefix, untraversableParents, VolumeError } from './volumes.js';

/** The host a pod runs on: its network namespace and address (a LabHost fits). */
export interface PodHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
}

export interface PodWorkerOptions {
  readonly api: KubeApi;
  readonly images: Readonly<Record<string, ImageSpec>>;
  readonly host: PodHost;
  readonly nodeName: string;
  /** This pod's own directory (created by the worker, removed by the kubelet). */
  readonly dir: string;
  /** Probe periods above this are shortened to it, so tests do not wait 10 s defaults. */
  readonly probePeriodCapMs: number;
  /** Longest restart back-off (a kubelet's is 5 min). */
  readonly maxBackoffMs: number;
  readonly log: (message: string) => void;
}

export interface ExecResultLite {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
}

type Kind = 'init' | 'sidecar' | 'main';

/** Where a "not yet running" container is stuck, in the kubelet's words. */
interface Waiting {
  readonly reason: string;
  readonly message?: string;
}

interface ProbeState {
  successes: number;
  failures: number;
  timer: NodeJS.Timeout | undefined;
}

/** A container of the pod and everything known about its runs. */
class ContainerRecord {
  proc: ContainerProcess | undefined;
  waiting: Waiting | undefined = { reason: 'ContainerCreating' };
  terminated: ContainerStateJson | undefined;
  lastState: ContainerStateJson | undefined;
  restartCount = 0;
  /** The readiness probe's verdict (true without a probe while running). */
  ready = false;
  /** startupProbe passed (true without a probe once running). */
  started = false;
  /** Earliest time of the next start after an exit (back-off). */
  notBefore = 0;
  /** This run's env (kept for exec). */
  env: Record<string, string> = {};
  user: { uid: number; gid: number; groups: number[] } | undefined;
  /** Starts the readiness and liveness probes once the startup probe passed. */
  afterStartup: (() => void) | undefined;
  readonly probes = new Map<string, ProbeState>();
  readonly output = new ContainerOutput();
  /** Bumped per run: probe callbacks of an old run are ignored. */
  generation = 0;

  constructor(
    readonly container: V1Container,
    readonly kind: Kind,
  ) {}

  get running(): boolean {
    return this.proc?.running === true;
  }

  /** Succeeded for good (an init container that exited 0). */
  get completed(): boolean {
    const t = this.terminated;
    return t !== undefined && 'terminated' in t && t.terminated.exitCode === 0 && !this.running;
  }

  state(): ContainerStateJson {
    if (this.running && this.proc !== undefined)
      return { running: { startedAt: kubeTime(this.proc.startedAt) } };
    if (this.waiting !== undefined) {
      return {
        waiting: {
          reason: this.waiting.reason,
          ...(this.waiting.message ? { message: this.waiting.message } : {}),
        },
      };
    }
    return this.terminated ?? { waiting: { reason: 'ContainerCreating' } };
  }
}

const MIN_BACKOFF_MS = 1_000;
/** A container that failed its liveness probe gets this long after SIGTERM (capped grace). */
const LIVENESS_KILL_GRACE_MS = 5_000;

export class PodWorker {
  pod: V1Pod;
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  private readonly records: ContainerRecord[];
  private readonly conditions = new Conditions();
  private volumesReady = false;
  private volumeError: string | undefined;
  private nextVolumeTry = 0;
  private lastStatus = '';
  private terminating = false;
  private readonly startTime = kubeTime();
  private readonly sockets = new Map<string, Promise<NamespaceSocket>>();
  private readonly forwards = new Set<HostForward>();
  private adminForward: Promise<HostForward> | undefined;
  private adminAddress: string | undefined;
  private failed: string | undefined;
  private initialized = false;

  constructor(
    pod: V1Pod,
    private readonly o: PodWorkerOptions,
  ) {
    this.pod = pod;
    this.uid = pod.metadata?.uid ?? '';
    this.namespace = pod.metadata?.namespace ?? '';
    this.name = pod.metadata?.name ?? '';
    this.records = [
      ...(pod.spec?.initContainers ?? []).map(
        (c) => new ContainerRecord(c, c.restartPolicy === 'Always' ? 'sidecar' : 'init'),
      ),
      ...(pod.spec?.containers ?? []).map((c) => new ContainerRecord(c, 'main')),
    ];
  }

  get host(): PodHost {
    return this.o.host;
  }

  get admin(): string | undefined {
    return this.adminAddress;
  }

  /** Last output of a container (all its runs), for failure messages. */
  output(container: string): string {
    return this.record(container)?.output.text() ?? '';
  }

  /** Whether the API would call this pod Ready (as last computed). */
  get ready(): boolean {
    return this.isReady();
  }

  private record(name: string): ContainerRecord | undefined {
    return this.records.find((r) => r.container.name === name);
  }

  private get restartPolicy(): string {
    return this.pod.spec?.restartPolicy ?? 'Always';
  }

  /** One step: volumes, starts, restarts, admin forward, status. */
  async sync(): Promise<void> {
    if (this.terminating) return;
    if (!this.volumesReady) await this.makeVolumes();
    if (this.volumesReady && this.failed === undefined) await this.startWhatIsDue();
    await this.ensureAdminForward();
    await this.writeStatus();
  }

  private async makeVolumes(): Promise<void> {
    if (Date.now() < this.nextVolumeTry) return;
    try {
      await mkdir(this.o.dir, { recursive: true, mode: 0o755 });
      for (const v of this.pod.spec?.volumes ?? []) {
        await makeVolume(this.o.api, this.pod, v, this.volumeDir(v.name));
      }
      this.volumesReady = true;
      this.volumeError = undefined;
    } catch (err) {
      if (!(err instanceof VolumeError)) throw err;
      // What `kubectl describe` shows as FailedMount; retried like the kubelet does.
      this.volumeError = err.message;
      this.nextVolumeTry = Date.now() + 1_000;
    }
  }

  private volumeDir(name: string): string {
    return join(this.o.dir, 'volumes', name);
  }

  private async startWhatIsDue(): Promise<void> {
    // Init containers in order: a sidecar must have started, a classic one must have completed,
    // before the next one starts. Once through, the pod is initialized for good: a sidecar that
    // crashes later is restarted next to the containers, which do not wait for it.
    if (!this.initialized) {
      for (const r of this.records.filter((x) => x.kind !== 'main')) {
        await this.keepGoing(r);
        if (r.kind === 'sidecar' ? !(r.running && r.started) : !r.completed) return;
      }
      this.initialized = true;
    }
    for (const r of this.records.filter((x) => x.kind !== 'init')) await this.keepGoing(r);
  }

  /** Starts a container that is due: never started, or exited and due for a restart. */
  private async keepGoing(r: ContainerRecord): Promise<void> {
    if (r.running || r.completed) return;
    const hasRun = r.terminated !== undefined;
    if (hasRun) {
      const t = r.terminated;
      const code = t !== undefined && 'terminated' in t ? t.terminated.exitCode : 1;
      if (!this.restarts(r, code)) {
        if (r.kind === 'init') this.failed = `init container ${r.container.name} failed`;
        return;
      }
      if (Date.now() < r.notBefore) {
        r.waiting = {
          reason: 'CrashLoopBackOff',
          message: `back-off ${Math.round(this.backoffMs(r) / 1000)}s restarting failed container=${r.container.name} pod=${this.name}_${this.namespace}(${this.uid})`,
        };
        return;
      }
    }
    await this.start(r);
  }

  /** Whether a container that exited with `code` runs again (the pod's restartPolicy, sidecars always). */
  private restarts(r: ContainerRecord, code: number): boolean {
    if (r.kind === 'sidecar') return true;
    if (r.kind === 'init') return code !== 0 && this.restartPolicy !== 'Never';
    return this.restartPolicy === 'Always' || (this.restartPolicy === 'OnFailure' && code !== 0);
  }

  private backoffMs(r: ContainerRecord): number {
    return Math.min(this.o.maxBackoffMs, MIN_BACKOFF_MS * 2 ** Math.max(0, r.restartCount - 1));
  }

  private async start(r: ContainerRecord): Promise<void> {
    const c = r.container;
    const image = findImage(this.o.images, c.image);
    if (image === undefined) {
      // No runtime could pull it: the same words a kubelet uses, plus what this one can run.
      r.waiting = {
        reason: 'ErrImagePull',
        message: `lab kubelet: image "${c.image ?? ''}" is not known (known repositories: ${Object.keys(this.o.images).join(', ')}; add it with imageCommands)`,
      };
      return;
    }
    let env: Record<string, string>;
    try {
      const own = await resolveContainerEnv(this.o.api, this.pod, c, {
        podIP: this.o.host.ip,
        hostIP: this.o.host.ip,
        nodeName: this.o.nodeName,
      });
      env = {
        PATH: DEFAULT_PATH,
        HOME: '/root',
        ...image.env,
        HOSTNAME: this.name,
        ...own,
      };
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      r.waiting = { reason: 'CreateContainerConfigError', message: err.message };
      return;
    }
    const cdir = join(this.o.dir, 'containers', c.name);
    const dataDir = join(cdir, 'data');
    const scratch = join(cdir, 'scratch');
    await mkdir(dataDir, { recursive: true, mode: 0o755 });
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    const argv = containerArgv(image, c).map((a) => (a === DATA_DIR ? dataDir : expandVars(a, env)));
    const user = this.userOf(c, image);
    // The "image" is this work tree: under a 0700 directory (a `mktemp -d` checkout, /root) its
    // user could not reach it. Such directories get a traversable overlay in the container's own
    // mount namespace; the host's stay as they are.
    const privateDirs =
      user === undefined
        ? []
        : [...new Set(argv.filter((a) => a.startsWith('/') && existsSync(a)).flatMap(untraversableParents))];
    if (user !== undefined) await chown(dataDir, user.uid, user.gid);
    if (user !== undefined && env.HOME === '/root') env.HOME = '/';
    let workingDir = c.workingDir ?? image.workingDir ?? DATA_DIR;
    if (workingDir === DATA_DIR) workingDir = dataDir;
    let mounts: string[];
    try {
      mounts = mountPrefix(
        containerMounts(c, (name) => this.volumeDir(name)),
        scratch,
        privateDirs.sort((a, b) => a.length - b.length),
      );
    } catch (err) {
      if (!(err instanceof ContainerConfigError)) throw err;
      r.waiting = { reason: 'CreateContainerConfigError', message: err.message };
      return;
    }
    r.env = env;
    r.user = user;
    r.generation++;
    r.ready = false;
    r.started = false;
    r.waiting = undefined;
    if (r.terminated !== undefined) r.lastState = r.terminated;
    r.terminated = undefined;
    r.output.append(`\n[lab-kubelet] ${kubeTime()} start ${JSON.stringify(argv)}\n`);
    const proc = new ContainerProcess(
      { ns: this.o.host.ns, argv, env, workingDir, mountPrefix: mounts, user },
      r.output,
    );
    r.proc = proc;
    const generation = r.generation;
    this.o.log(
      `${this.namespace}/${this.name} ${c.name}: started pid ${String(proc.pid)} on ${this.o.host.name}`,
    );
    void proc.exited.then((exit) => {
      if (r.generation !== generation) return;
      this.stopProbes(r);
      r.ready = false;
      const t = terminatedOf(exit.code, exit.signal, constants.signals);
      r.terminated = {
        terminated: {
          ...t,
          startedAt: kubeTime(proc.startedAt),
          finishedAt: kubeTime(exit.at),
          containerID: `lab://${String(proc.pid)}`,
        },
      };
      r.output.append(
        `\n[lab-kubelet] ${kubeTime()} exited: code ${String(exit.code)} signal ${String(exit.signal)}\n`,
      );
      if (this.terminating) return;
      if (this.restarts(r, t.exitCode)) {
        r.restartCount++;
        r.notBefore = Date.now() + this.backoffMs(r);
      }
      this.o.log(`${this.namespace}/${this.name} ${c.name}: exited ${t.exitCode} (${t.reason})`);
    });
    this.startProbes(r, generation);
  }

  /** securityContext (container over pod) over the image's USER; undefined = root. */
  private userOf(
    c: V1Container,
    image: ImageSpec,
  ): { uid: number; gid: number; groups: number[] } | undefined {
    const pod = this.pod.spec?.securityContext;
    const uid = c.securityContext?.runAsUser ?? pod?.runAsUser ?? image.user?.uid;
    const gid =
      c.securityContext?.runAsGroup ??
      pod?.runAsGroup ??
      image.user?.gid ??
      (uid === undefined ? undefined : 0);
    if (uid === undefined || (uid === 0 && (gid ?? 0) === 0)) return undefined;
    const groups = [...(pod?.fsGroup === undefined ? [] : [pod.fsGroup]), ...(pod?.supplementalGroups ?? [])];
    return { uid, gid: gid ?? 0, groups };
  }

  // ---- probes ------------------------------------------------------------------------------

  private startProbes(r: ContainerRecord, generation: number): void {
    const c = r.container;
    if (c.startupProbe === undefined) r.started = true;
    if (c.readinessProbe === undefined) r.ready = true;
    const schedule = (kind: 'startup' | 'readiness' | 'liveness', probe: V1Probe, delayMs: number): void => {
      const state = r.probes.get(kind) ?? { successes: 0, failures: 0, timer: undefined };
      r.probes.set(kind, state);
      state.timer = setTimeout(() => void this.probeOnce(r, generation, kind, probe, state), delayMs);
    };
    const begin = (): void => {
      if (c.readinessProbe !== undefined)
        schedule('readiness', c.readinessProbe, (c.readinessProbe.initialDelaySeconds ?? 0) * 1000);
      if (c.livenessProbe !== undefined)
        schedule('liveness', c.livenessProbe, (c.livenessProbe.initialDelaySeconds ?? 0) * 1000);
    };
    r.probes.clear();
    if (c.startupProbe !== undefined) {
      r.afterStartup = begin;
      schedule('startup', c.startupProbe, (c.startupProbe.initialDelaySeconds ?? 0) * 1000);
    } else {
      begin();
    }
  }

  private periodMs(probe: V1Probe): number {
    return Math.min((probe.periodSeconds ?? 10) * 1000, this.o.probePeriodCapMs);
  }

  private async probeOnce(
    r: ContainerRecord,
    generation: number,
    kind: 'startup' | 'readiness' | 'liveness',
    probe: V1Probe,
    state: ProbeState,
  ): Promise<void> {
    if (r.generation !== generation || !r.running || this.terminating) return;
    const result = await runProbe(probe, r.container, this.o.host.ip, {
      socketFor: (port) => this.socketFor(this.o.host.ip, port).then((s) => s.path),
      exec: async (argv, timeoutMs) => (await this.exec(r.container.name, argv, { timeoutMs })).code,
    });
    if (r.generation !== generation || !r.running || this.terminating) return;
    if (result.ok) {
      state.successes++;
      state.failures = 0;
    } else {
      state.failures++;
      state.successes = 0;
    }
    const successThreshold = probe.successThreshold ?? 1;
    const failureThreshold = probe.failureThreshold ?? 3;
    if (kind === 'startup') {
      if (state.successes >= successThreshold) {
        r.started = true;
        r.afterStartup?.();
        return; // a startup probe stops once it succeeded
      }
      if (state.failures >= failureThreshold) {
        r.output.append(`\n[lab-kubelet] startup probe failed: ${result.message}; killing\n`);
        r.proc?.signal('SIGKILL');
        return;
      }
    } else if (kind === 'readiness') {
      if (state.successes >= successThreshold) r.ready = true;
      if (state.failures >= failureThreshold) r.ready = false;
    } else if (state.failures >= failureThreshold) {
      r.output.append(`\n[lab-kubelet] liveness probe failed: ${result.message}; killing\n`);
      void r.proc?.stop(LIVENESS_KILL_GRACE_MS);
      return;
    }
    state.timer = setTimeout(
      () => void this.probeOnce(r, generation, kind, probe, state),
      this.periodMs(probe),
    );
  }

  private stopProbes(r: ContainerRecord): void {
    for (const p of r.probes.values()) clearTimeout(p.timer);
    r.afterStartup = undefined;
  }

  // ---- sockets, forwards, exec ---------------------------------------------------------------

  /** A socat in the pod's namespace for `ip:port`, one per target, restarted if it died. */
  private async socketFor(ip: string, port: number): Promise<NamespaceSocket> {
    const key = `${ip}:${port}`;
    let s = this.sockets.get(key);
    if (s !== undefined) {
      const open = await s.catch(() => undefined);
      if (open?.alive) return open;
    }
    s = (async () => {
      await mkdir(join(this.o.dir, 'sock'), { recursive: true, mode: 0o700 });
      return NamespaceSocket.open(join(this.o.dir, 'sock', `${ip}-${port}.sock`), this.o.host.ns, key);
    })();
    this.sockets.set(key, s);
    return s;
  }

  /** 127.0.0.1:<free> on this host → the pod's 127.0.0.1:port, like kubectl port-forward. */
  async portForward(port: number): Promise<string> {
    if (this.terminating) throw new Error(`pod ${this.namespace}/${this.name} is terminating`);
    // Its own socat: closing one forward must not break another to the same port.
    await mkdir(join(this.o.dir, 'sock'), { recursive: true, mode: 0o700 });
    const unix = await NamespaceSocket.open(
      join(this.o.dir, 'sock', `pf-${port}-${this.forwards.size}.sock`),
      this.o.host.ns,
      `127.0.0.1:${port}`,
    );
    const fwd = await HostForward.open(unix);
    this.forwards.add(fwd);
    return fwd.address;
  }

  /** The sidecar's admin port (named pt-admin), forwarded and published in the annotation. */
  private async ensureAdminForward(): Promise<void> {
    if (this.adminForward !== undefined) return;
    const r = this.records.find((x) => x.container.ports?.some((p) => p.name === 'pt-admin'));
    const port = r?.container.ports?.find((p) => p.name === 'pt-admin')?.containerPort;
    if (r === undefined || port === undefined || !r.running) return;
    this.adminForward = this.portForward(port).then((address) => {
      const fwd = [...this.forwards].at(-1);
      if (fwd === undefined) throw new Error('no forward');
      this.adminAddress = address;
      return fwd;
    });
    await this.adminForward;
    await this.o.api.mergePatch(
      this.o.api.podPath(this.namespace, this.name),
      { metadata: { uid: this.uid, annotations: { [ADMIN_ADDRESS_ANNOTATION]: this.adminAddress } } },
      [200, 404, 409],
    );
  }

  /** Runs argv inside the container (its network and mount namespaces, user and env), like kubectl exec. */
  exec(
    container: string,
    argv: readonly string[],
    opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {},
  ): Promise<ExecResultLite> {
    const r = this.record(container);
    const pid = r?.proc?.pid;
    if (r === undefined || pid === undefined || !r.running) {
      return Promise.reject(
        new Error(`container ${container} of pod ${this.namespace}/${this.name} is not running`),
      );
    }
    const user =
      r.user === undefined ? [] : [`--reuid=${r.user.uid}`, `--regid=${r.user.gid}`, '--clear-groups'];
    return new Promise((resolve, reject) => {
      const child = spawn(
        'nsenter',
        ['--target', String(pid), '--mount', '--net', '--wd', '--', 'setpriv', ...user, '--', ...argv],
        {
          env: { ...r.env, ...opts.env },
          stdio: ['pipe', 'pipe', 'pipe'],
          timeout: opts.timeoutMs ?? 30_000,
          killSignal: 'SIGKILL',
        },
      );
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ stdout, stderr, code }));
      child.stdin.on('error', () => {});
      child.stdin.end(opts.input ?? '');
    });
  }

  // ---- status ---------------------------------------------------------------------------------

  private isReady(): boolean {
    return (
      this.initialized &&
      this.records.every((r) => r.kind === 'init' || (r.running && r.ready)) &&
      this.failed === undefined &&
      !this.terminating
    );
  }

  private phase(): string {
    if (this.failed !== undefined) return 'Failed';
    const mains = this.records.filter((r) => r.kind === 'main');
    const started = mains.some((r) => r.running || r.terminated !== undefined);
    if (!started) return 'Pending';
    if (this.restartPolicy !== 'Always' && mains.every((r) => !r.running && r.terminated !== undefined)) {
      const willRestart = mains.some(
        (r) => Date.now() < r.notBefore || r.waiting?.reason === 'CrashLoopBackOff',
      );
      if (!willRestart) {
        return mains.every((r) => r.completed) ? 'Succeeded' : 'Failed';
      }
    }
    return 'Running';
  }

  private view(r: ContainerRecord) {
    const state = r.state();
    const stuck =
      this.volumeError !== undefined && 'waiting' in state && state.waiting.reason === 'ContainerCreating'
        ? {
            waiting: {
              reason: 'ContainerCreating',
              message: `MountVolume.SetUp failed: ${this.volumeError}`,
            },
          }
        : state;
    return containerStatus({
      name: r.container.name,
      image: r.container.image ?? '',
      state: stuck,
      lastState: r.lastState,
      restartCount: r.restartCount,
      ready: r.running && r.ready,
      started: r.running && r.started,
      containerID: r.proc === undefined ? undefined : `lab://${String(r.proc.pid)}`,
    });
  }

  /** The status a kubelet would report now. */
  status(): Record<string, unknown> {
    const init = this.records.filter((r) => r.kind !== 'main');
    const initDone = this.initialized;
    const ready = this.isReady();
    const notReady = this.records
      .filter((r) => r.kind !== 'init' && !(r.running && r.ready))
      .map((r) => r.container.name);
    const why = notReady.length > 0 ? `containers with unready status: [${notReady.join(' ')}]` : undefined;
    return {
      phase: this.phase(),
      hostIP: this.o.host.ip,
      hostIPs: [{ ip: this.o.host.ip }],
      podIP: this.o.host.ip,
      podIPs: [{ ip: this.o.host.ip }],
      startTime: this.startTime,
      conditions: [
        this.conditions.make('PodReadyToStartContainers', this.volumesReady),
        this.conditions.make(
          'Initialized',
          initDone,
          initDone ? undefined : 'ContainersNotInitialized',
          initDone ? undefined : 'containers with incomplete status',
        ),
        this.conditions.make(
          'Ready',
          ready,
          ready ? undefined : 'ContainersNotReady',
          ready ? undefined : why,
        ),
        this.conditions.make(
          'ContainersReady',
          ready,
          ready ? undefined : 'ContainersNotReady',
          ready ? undefined : why,
        ),
        this.conditions.make('PodScheduled', true),
      ],
      ...(init.length > 0 ? { initContainerStatuses: init.map((r) => this.view(r)) } : {}),
      containerStatuses: this.records.filter((r) => r.kind === 'main').map((r) => this.view(r)),
    };
  }

  private async writeStatus(): Promise<void> {
    const status = this.status();
    const text = JSON.stringify(status);
    if (text === this.lastStatus) return;
    if (await this.o.api.patchPodStatus(this.namespace, this.name, this.uid, status)) this.lastStatus = text;
  }

  // ---- the end --------------------------------------------------------------------------------

  /**
   * Stops every container (regular ones first, then sidecars in reverse order, as a kubelet does):
   * SIGTERM, SIGKILL after `graceMs`; then closes every socket and forward.
   */
  async terminate(graceMs: number, reportStatus: boolean): Promise<void> {
    this.terminating = true;
    for (const r of this.records) this.stopProbes(r);
    const deadline = Date.now() + graceMs;
    const stopAll = (rs: ContainerRecord[]) =>
      Promise.all(rs.map((r) => r.proc?.stop(Math.max(0, deadline - Date.now())) ?? Promise.resolve()));
    await stopAll(this.records.filter((r) => r.kind !== 'sidecar'));
    for (const r of this.records.filter((x) => x.kind === 'sidecar').reverse()) await stopAll([r]);
    for (const r of this.records) r.proc?.killGroup();
    await Promise.all([...this.forwards].map((f) => f.close()));
    this.forwards.clear();
    await Promise.all([...this.sockets.values()].map(async (s) => (await s.catch(() => undefined))?.close()));
    this.sockets.clear();
    if (reportStatus) {
      const status = this.status();
      await this.o.api.patchPodStatus(this.namespace, this.name, this.uid, status).catch(() => false);
    }
  }
}
