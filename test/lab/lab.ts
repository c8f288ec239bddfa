/**
 * The NAT lab: network namespaces joined by veth pairs (never to the host's own namespace), routed
 * like a small internet with NAT routers, and torn down afterwards.
 *
 *   relay0 203.0.113.10 ─┐                          ┌─ router a 198.51.100.10 ── LAN 198.18.1.0/24 ── a/0 198.18.1.10
 *   relay1 203.0.113.11 ─┤ brr 203.0.113.1          │   (eim | symmetric | upnp: NAT + firewall)
 *                        └─ backbone (inet) ────────┤ brs 198.51.100.1
 *                           routes, no NAT          └─ router n 198.51.100.11 ── LAN 192.0.2.0/27 (nat: none, routed)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { publicRanges } from './addresses.js';
import {
  cleanStaleLabs,
  destroyNamespaces,
  destroyNamespacesSync,
  listLabNamespaces,
  namespacePids,
  runDir,
  writeOwnerRecord,
} from './cleanup.js';
import { LabCleanupError, LabConfigError, LabError, MiniupnpdStartError } from './errors.js';
import { type ExecOptions, type ExecResult, LineReader, run, runOk, waitForExit } from './exec.js';
import {
  type HostPlan,
  LAB_NAMESPACE_PATTERN,
  type LabInit,
  type LabPlan,
  type NatKind,
  newRunId,
  planLab,
  type SitePlan,
} from './plan.js';
import {
  backboneBatch,
  hostBatch,
  miniupnpdConfig,
  miniupnpdNft,
  routerBatch,
  routerIptables,
  sysctlScript,
  sysctlsFor,
} from './render.js';

export interface LabSpawnOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
}

/** Anything with its own network namespace: run commands and processes inside it. */
export interface LabNode {
  /** `relay0`, `a/0`, `router a`, `backbone`. */
  readonly name: string;
  readonly ns: string;
  /** Run `cmd` inside the namespace to completion (default timeout 30 s; never throws on exit code). */
  exec(cmd: string, args?: readonly string[], options?: ExecOptions): Promise<ExecResult>;
  /** Start `cmd` inside the namespace; stdio are pipes. The lab kills it on `stop()`. */
  spawn(cmd: string, args?: readonly string[], options?: LabSpawnOptions): ChildProcess;
  /** Start a Node script (TypeScript is fine: Node 24 strips types) with this process's Node binary. */
  spawnNode(script: string, args?: readonly string[], options?: LabSpawnOptions): ChildProcess;
}

export interface LabHost extends LabNode {
  readonly ip: string;
  readonly gateway: string;
  /** Site name, or undefined for a relay. */
  readonly site: string | undefined;
}

export interface LabRouter extends LabNode {
  readonly site: string;
  readonly nat: NatKind;
  /** Address on the lab internet (198.51.100.x): what NATed traffic comes from. */
  readonly publicIp: string;
  readonly lanIp: string;
  readonly lanCidr: string;
  readonly hosts: readonly LabHost[];
  /** miniupnpd's log so far ('' unless `nat: 'upnp'`). */
  miniupnpdLog(): string;
}

export interface LabBackbone extends LabNode {
  readonly relayGateway: string;
  readonly siteGateway: string;
  /** The lab's STUN responder, running when a site has `nat: 'upnp'`. */
  readonly stun: { readonly ip: string; readonly port: number } | undefined;
}

export interface Lab {
  readonly runId: string;
  readonly plan: LabPlan;
  /** Ranges reachable between sites: the node config's `publicRanges` in the lab. */
  readonly publicRanges: readonly string[];
  /** Every namespace of this lab. */
  readonly namespaces: readonly string[];
  readonly backbone: LabBackbone;
  readonly relays: readonly LabHost[];
  readonly routers: readonly LabRouter[];
  relay(index?: number): LabHost;
  host(site: string, index?: number): LabHost;
  router(site: string): LabRouter;
  /** The last 16 KiB of a spawned process's stdout and stderr, interleaved: for failure messages. */
  output(child: ChildProcess): string;
  /** Pids of every process in the lab's namespaces, spawned by the lab or by its processes. */
  pids(): Promise<number[]>;
  /** Kill every process, delete every namespace and the run directory. Idempotent. */
  stop(): Promise<void>;
}

/** Absolute path of a script in test/lab/tools/. */
export function labTool(name: string): string {
  return fileURLToPath(new URL(`./tools/${name}`, import.meta.url));
}

const TERM_GRACE_MS = 2_000;
const OUTPUT_TAIL_CHARS = 16 * 1024;
const KILL_GRACE_MS = 2_000;
const MINIUPNPD_READY_MS = 20_000;

class Node implements LabNode {
  constructor(
    readonly name: string,
    readonly ns: string,
    protected readonly owner: LabImpl,
  ) {}

  exec(cmd: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.ns, cmd, ...args], options);
  }

  spawn(cmd: string, args: readonly string[] = [], options: LabSpawnOptions = {}): ChildProcess {
    return this.owner.track(
      // `ip netns exec` execs the command after entering the namespace: the child's pid is the
      // command's own, so killing it kills the command.
      spawn('ip', ['netns', 'exec', this.ns, cmd, ...args], {
        stdio: ['pipe', 'pipe', 'pipe'],
        env: options.env ?? process.env,
        cwd: options.cwd,
      }),
    );
  }

  spawnNode(script: string, args: readonly string[] = [], options: LabSpawnOptions = {}): ChildProcess {
    return this.spawn(process.execPath, ['--disable-warning=ExperimentalWarning', script, ...args], options);
  }
}

class Host extends Node implements LabHost {
  readonly ip: string;
  readonly gateway: string;
  constructor(
    plan: HostPlan,
    readonly site: string | undefined,
    owner: LabImpl,
  ) {
    super(plan.name, plan.ns, owner);
    this.ip = plan.ip;
    this.gateway = plan.gateway;
  }
}

class Router extends Node implements LabRouter {
  readonly site: string;
  readonly nat: NatKind;
  readonly publicIp: string;
  readonly lanIp: string;
  readonly lanCidr: string;
  readonly hosts: readonly LabHost[];
  miniupnpdLines: LineReader | undefined;
  constructor(
    readonly plan: SitePlan,
    owner: LabImpl,
  ) {
    super(`router ${plan.name}`, plan.ns, owner);
    this.site = plan.name;
    this.nat = plan.nat;
    this.publicIp = plan.publicIp;
    this.lanIp = plan.lanIp;
    this.lanCidr = plan.lanCidr;
    this.hosts = plan.hosts.map((h) => new Host(h, plan.name, owner));
  }

  miniupnpdLog(): string {
    return this.miniupnpdLines?.text() ?? '';
  }
}

class Backbone extends Node implements LabBackbone {
  readonly relayGateway: string;
  readonly siteGateway: string;
  readonly stun: { readonly ip: string; readonly port: number } | undefined;
  constructor(plan: LabPlan, owner: LabImpl) {
    super('backbone', plan.backbone.ns, owner);
    this.relayGateway = plan.backbone.relayGateway;
    this.siteGateway = plan.backbone.siteGateway;
    this.stun = plan.sites.some((s) => s.nat === 'upnp')
      ? { ip: plan.backbone.stunIp, port: plan.backbone.stunPort }
      : undefined;
  }
}

class LabImpl implements Lab {
  readonly runId: string;
  readonly publicRanges = publicRanges;
  readonly namespaces: readonly string[];
  readonly backbone: Backbone;
  readonly relays: readonly LabHost[];
  readonly routers: readonly Router[];
  readonly dir: string;
  private readonly children = new Set<ChildProcess>();
  private readonly outputs = new WeakMap<ChildProcess, () => string>();
  private stopping: Promise<void> | undefined;
  private readonly exitHook = (): void => this.stopSync();

  constructor(readonly plan: LabPlan) {
    this.runId = plan.runId;
    this.namespaces = plan.namespaces;
    this.dir = runDir(plan.runId);
    this.backbone = new Backbone(plan, this);
    this.relays = plan.relays.map((r) => new Host(r, undefined, this));
    this.routers = plan.sites.map((s) => new Router(s, this));
  }

  relay(index = 0): LabHost {
    const relay = this.relays[index];
    if (!relay) {
      throw new LabConfigError(`no relay ${index}: the lab has ${this.relays.length}`);
    }
    return relay;
  }

  router(site: string): LabRouter {
    return this.routerImpl(site);
  }

  private routerImpl(site: string): Router {
    const router = this.routers.find((r) => r.site === site);
    if (!router) {
      throw new LabConfigError(
        `no site ${site}: sites are ${this.routers.map((r) => r.site).join(', ') || 'none'}`,
      );
    }
    return router;
  }

  host(site: string, index = 0): LabHost {
    const router = this.routerImpl(site);
    const host = router.hosts[index];
    if (!host) {
      throw new LabConfigError(`site ${site} has no host ${index}: it has ${router.hosts.length}`);
    }
    return host;
  }

  track(child: ChildProcess): ChildProcess {
    if (this.stopping) {
      child.kill('SIGKILL');
      throw new LabError('the lab is stopped: cannot spawn');
    }
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    // Always drain both pipes: a chatty process nobody reads would otherwise block on a full pipe.
    // Listeners added later by the caller (e.g. a LineReader right after spawn) still see every
    // chunk, since no data is emitted before the current tick ends.
    let tail = '';
    const keep = (chunk: Buffer | string): void => {
      tail = (tail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.outputs.set(child, () => tail);
    // Keep a spawn failure (e.g. ENOENT) from becoming an unhandled 'error' event: the 'exit'
    // and LineReader report it to whoever waits on the process.
    child.on('error', () => {});
    return child;
  }

  output(child: ChildProcess): string {
    return this.outputs.get(child)?.() ?? '';
  }

  async pids(): Promise<number[]> {
    const all = new Set<number>();
    for (const child of this.children) {
      if (child.pid !== undefined) {
        all.add(child.pid);
      }
    }
    const existing = new Set(await listLabNamespaces());
    for (const ns of this.namespaces) {
      if (existing.has(ns)) {
        for (const pid of await namespacePids(ns)) {
          all.add(pid);
        }
      }
    }
    return [...all].sort((a, b) => a - b);
  }

  async build(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    writeOwnerRecord(this.runId);
    process.on('exit', this.exitHook);
    const plan = this.plan;

    for (const ns of plan.namespaces) {
      await runOk('ip', ['netns', 'add', ns]);
    }
    // Before any link exists: interfaces take the namespace's defaults when they are created.
    const roles = new Map<string, 'backbone' | 'router' | 'host'>([[plan.backbone.ns, 'backbone']]);
    for (const site of plan.sites) {
      roles.set(site.ns, 'router');
    }
    await Promise.all(
      plan.namespaces.map((ns) =>
        runOk('ip', ['netns', 'exec', ns, 'sh', '-c', sysctlScript(sysctlsFor(roles.get(ns) ?? 'host'))]),
      ),
    );
    await this.batch(plan.backbone.ns, backboneBatch(plan));
    await Promise.all([
      ...plan.relays.map((relay) => this.batch(relay.ns, hostBatch(relay))),
      ...plan.sites.map((site) => this.batch(site.ns, routerBatch(site, plan.backbone.siteGateway))),
    ]);
    await Promise.all(
      plan.sites.flatMap((site) => site.hosts.map((host) => this.batch(host.ns, hostBatch(host)))),
    );
    // iptables-nft explicitly, not the `iptables` alternative: miniupnpd's Debian build writes
    // nftables, and one netfilter backend per router keeps `nft list ruleset` the whole truth.
    await Promise.all(
      plan.sites.map((site) =>
        runOk('ip', ['netns', 'exec', site.ns, 'iptables-nft-restore'], { input: routerIptables(site) }),
      ),
    );
    const upnpSites = this.routers.filter((r) => r.nat === 'upnp');
    if (upnpSites.length > 0) {
      await this.startStun();
      await Promise.all(upnpSites.map((router) => this.startMiniupnpd(router)));
    }
  }

  private async batch(ns: string, lines: readonly string[]): Promise<void> {
    await runOk('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n` });
  }

  private async startStun(): Promise<void> {
    const { stunIp, stunPort } = this.plan.backbone;
    const child = this.backbone.spawnNode(labTool('stun-server.ts'), [stunIp, String(stunPort)]);
    await new LineReader(child, 'stun-server').next((l) => l.startsWith('listening'), 10_000, 'listening');
  }

  private async startMiniupnpd(router: Router): Promise<void> {
    const dir = join(this.dir, `miniupnpd-${router.site}`);
    mkdirSync(dir, { recursive: true });
    const conf = join(dir, 'miniupnpd.conf');
    writeFileSync(
      conf,
      miniupnpdConfig(router.plan, this.plan.backbone, { leaseFile: join(dir, 'leases') }, randomUUID()),
    );
    await runOk('ip', ['netns', 'exec', router.ns, 'nft', '-f', '-'], { input: miniupnpdNft() });
    // -d: stay in the foreground (the lab owns the process) and log to stderr.
    const child = router.spawn('miniupnpd', ['-d', '-f', conf, '-P', join(dir, 'miniupnpd.pid')]);
    const log = new LineReader(child, `miniupnpd ${router.site}`, 'stderr');
    router.miniupnpdLines = log;
    const verdict = await log.next(
      (l) => l.includes('Port forwarding is now'),
      MINIUPNPD_READY_MS,
      'STUN verdict',
    );
    if (!verdict.includes('enabled')) {
      throw new MiniupnpdStartError(router.site, 'port forwarding stayed disabled after STUN', log.text());
    }
    const natpmp = router.plan.portMapping?.natpmp ?? true;
    await log.next(
      (l) => l.includes(natpmp ? 'Listening for NAT-PMP/PCP traffic' : 'HTTP listening on port'),
      MINIUPNPD_READY_MS,
      'miniupnpd listening',
    );
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const problems: string[] = [];
    const children = [...this.children];
    for (const child of children) {
      child.kill('SIGTERM');
    }
    await Promise.all(
      children.map(async (child) => {
        if (!(await waitForExit(child, TERM_GRACE_MS))) {
          child.kill('SIGKILL');
          if (!(await waitForExit(child, KILL_GRACE_MS))) {
            problems.push(`pid ${child.pid} did not exit after SIGKILL`);
          }
        }
      }),
    );
    problems.push(...(await destroyNamespaces(this.namespaces)));
    const left = (await listLabNamespaces()).filter((ns) => this.namespaces.includes(ns));
    if (left.length > 0) {
      problems.push(`namespaces left: ${left.join(', ')}`);
    }
    rmSync(this.dir, { recursive: true, force: true });
    process.off('exit', this.exitHook);
    if (problems.length > 0) {
      throw new LabCleanupError(problems);
    }
  }

  /** Last resort when the process exits without `stop()` (a crashed test): no async work runs here. */
  private stopSync(): void {
    for (const child of this.children) {
      child.kill('SIGKILL');
    }
    destroyNamespacesSync(this.namespaces);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Build a lab. Cleans up leftovers of crashed earlier runs first; if building fails half-way,
 * everything made so far is removed before the error is thrown.
 *
 * @example
 * const lab = await createLab({ relays: 1, sites: [{ name: 'a', nat: 'eim' }, { name: 'b', nat: 'symmetric' }] });
 * try {
 *   const { stdout } = await lab.host('a').exec('ip', ['route']);
 * } finally {
 *   await lab.stop();
 * }
 */
export async function createLab(init: LabInit = {}): Promise<Lab> {
  planLab(init, newRunId()); // validate the options before touching the machine
  await cleanStaleLabs();
  // Two labs of one process share the pid part of the run id: retry the 4 random hex digits until
  // no namespace of that run exists (bounded; 65536 choices).
  const taken = new Set((await listLabNamespaces()).map((ns) => LAB_NAMESPACE_PATTERN.exec(ns)?.[1]));
  let runId = newRunId();
  for (let attempt = 0; taken.has(runId) || existsSync(runDir(runId)); attempt++) {
    if (attempt >= 20) {
      throw new LabError('could not find a free lab run id in 20 attempts');
    }
    runId = newRunId();
  }
  const plan = planLab(init, runId);
  const lab = new LabImpl(plan);
  try {
    await lab.build();
  } catch (err) {
    await lab.stop().catch((cleanupErr: unknown) => {
      process.stderr.write(`ptlab: cleanup after a failed build: ${String(cleanupErr)}\n`);
    });
    throw err;
  }
  return lab;
}
