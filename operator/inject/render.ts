/**
 * Over 300 lines on purpose: container, volumes, probes and node config are rendered from one merge decision.
 *
 * Renders the sidecar of one pod: the tunnels that select it and their network → the node config
 * (validated by the sidecar's own `parseConfig`) and the container that runs it. Pure.
 *
 * Several tunnels selecting one pod merge into one sidecar when they share a network and do not
 * disagree; otherwise the result is a skip reason, never a half-right sidecar.
 */
import { createHash } from 'node:crypto';
import type { V1Container, V1Probe, V1SecurityContext, V1Volume } from '@kubernetes/client-node';
import { LIMITS } from '../../contracts/limits.js';
import type { AllowFromRule } from '../../contracts/trust.js';
import { DEFAULTS, type PeerNetwork, type PeerTunnel } from '../../crds/schema.js';
import { CONFIG_ENV, type NodeConfigInput, parseConfig } from '../../sidecar/config/config.js';
import { type Skip, SkipReason } from './reasons.js';
import type { InjectSettings } from './settings.js';

/** Names of the sidecar's container ports (at most 15 characters, unique in the pod). */
export const P2P_PORT_NAME = 'pt-p2p';
export const ADMIN_PORT_NAME = 'pt-admin';
/** The CLI subcommand the sidecar runs; the image's entrypoint is the `peertunnel` CLI. */
export const SIDECAR_ARGS: readonly string[] = ['node'];

import { SWARM_KEY_DIR, SWARM_KEY_VOLUME, swarmKeyConfig, swarmKeyVolume } from './swarm-key.js';
import { renderTrust, trustMounts, trustProblem, trustVolumes } from './trust.js';

export {
  NEXT_SWARM_KEY_FILE,
  SWARM_KEY_DIR,
  SWARM_KEY_FILE,
  SWARM_KEY_VOLUME,
  swarmKeyVolume,
} from './swarm-key.js';

/** Kubernetes' default terminationGracePeriodSeconds. */
const DEFAULT_GRACE_SECONDS = 30;

/**
 * The drain a stopping sidecar gets: two thirds of the pod's grace period, so it closes what is
 * left before the kubelet's SIGKILL (20 s of the default 30).
 */
export function drainSecondsFor(terminationGracePeriodSeconds: number | undefined): number {
  const grace = terminationGracePeriodSeconds ?? DEFAULT_GRACE_SECONDS;
  return Math.max(0, Math.min(3600, Math.floor((grace * 2) / 3)));
}

export interface RenderedSidecar {
  kind: 'rendered';
  /** The container to inject (native sidecars carry `restartPolicy: Always`). */
  container: V1Container;
  /** The pod volume the container mounts the swarm key from. */
  volume: V1Volume;
  /** More volumes it mounts: the token and credential volumes of a credentialed network. */
  extraVolumes: V1Volume[];
  /** The node config as rendered into the PEERTUNNEL_CONFIG env var (defaults left to the node). */
  config: NodeConfigInput;
  /** A short hash of everything injected; equal hashes mean an identical sidecar. */
  hash: string;
  /** Names of the tunnels merged into this sidecar, sorted. */
  tunnels: string[];
  network: string;
}

export type RenderResult = RenderedSidecar | ({ kind: 'skipped' } & Skip);

export interface RenderInput {
  /** The tunnels that select the pod (same namespace, not being deleted). */
  tunnels: readonly PeerTunnel[];
  /** The network they all reference. */
  network: PeerNetwork;
  settings: InjectSettings;
  /** Ports the pod's own containers declare: a forward must not listen on them. */
  podPorts?: readonly number[];
  /** The pod's terminationGracePeriodSeconds: the sidecar's drain stays below it. */
  terminationGracePeriodSeconds?: number | undefined;
}

const skipped = (reason: Skip['reason'], message: string): RenderResult => ({
  kind: 'skipped',
  reason,
  message,
});

interface Merged {
  expose: NonNullable<NodeConfigInput['expose']>;
  forward: NonNullable<NodeConfigInput['forward']>;
}

/** Merges the tunnels' expose and forward lists; identical duplicates collapse, others conflict. */
export function mergeTunnels(tunnels: readonly PeerTunnel[]): Merged | Skip {
  const expose = new Map<string, { entry: Merged['expose'][number]; from: string }>();
  const forward = new Map<string, { entry: Merged['forward'][number]; from: string }>();
  const localPorts = new Map<number, { name: string; from: string }>();
  for (const t of tunnels) {
    const from = t.metadata.name ?? '?';
    for (const e of t.spec.expose ?? []) {
      const entry: Merged['expose'][number] =
        e.host === undefined ? { name: e.name, port: e.port } : { name: e.name, port: e.port, host: e.host };
      if (e.allowFrom !== undefined) entry.allowFrom = e.allowFrom.map(allowFromRule);
      const seen = expose.get(e.name);
      if (seen === undefined) expose.set(e.name, { entry, from });
      else if (canonicalJson(seen.entry.allowFrom) !== canonicalJson(entry.allowFrom)) {
        return {
          reason: SkipReason.ConflictingTunnels,
          message: `tunnels ${seen.from} and ${from} both expose "${e.name}" with different allowFrom rules`,
        };
      } else if (seen.entry.port !== e.port || (seen.entry.host ?? '127.0.0.1') !== (e.host ?? '127.0.0.1')) {
        return {
          reason: SkipReason.ConflictingTunnels,
          message: `tunnels ${seen.from} and ${from} both expose "${e.name}" with different targets (${seen.entry.host ?? '127.0.0.1'}:${seen.entry.port} and ${e.host ?? '127.0.0.1'}:${e.port})`,
        };
      }
    }
    for (const f of t.spec.forward ?? []) {
      const seen = forward.get(f.name);
      if (seen !== undefined) {
        if (seen.entry.localPort !== f.localPort) {
          return {
            reason: SkipReason.ConflictingTunnels,
            message: `tunnels ${seen.from} and ${from} both forward "${f.name}", to local ports ${seen.entry.localPort} and ${f.localPort}`,
          };
        }
        continue;
      }
      const port = localPorts.get(f.localPort);
      if (port !== undefined) {
        return {
          reason: SkipReason.PortConflict,
          message: `tunnels ${port.from} and ${from} both listen on local port ${f.localPort} (for "${port.name}" and "${f.name}")`,
        };
      }
      forward.set(f.name, { entry: { name: f.name, localPort: f.localPort }, from });
      localPorts.set(f.localPort, { name: f.name, from });
    }
  }
  return {
    expose: [...expose.values()].map((v) => v.entry),
    forward: [...forward.values()].map((v) => v.entry),
  };
}

/** A CRD allowFrom entry as the node config spells it: absent fields are "*". */
function allowFromRule(r: Partial<AllowFromRule>): AllowFromRule {
  return {
    cluster: r.cluster ?? '*',
    namespace: r.namespace ?? '*',
    serviceAccount: r.serviceAccount ?? '*',
  };
}

function portProblem(
  merged: Merged,
  settings: InjectSettings,
  podPorts: readonly number[],
): string | undefined {
  const own = new Map<number, string>([
    [settings.p2pPort, "the sidecar's libp2p port"],
    [settings.adminPort, "the sidecar's admin port"],
  ]);
  for (const p of podPorts) {
    const mine = own.get(p);
    if (mine !== undefined) return `a container of the pod declares port ${p}, which is ${mine}`;
  }
  for (const f of merged.forward) {
    const mine = own.get(f.localPort);
    if (mine !== undefined)
      return `forward "${f.name}" would listen on port ${f.localPort}, which is ${mine}`;
    if (podPorts.includes(f.localPort)) {
      return `forward "${f.name}" would listen on port ${f.localPort}, which a container of the pod declares`;
    }
    const e = merged.expose.find((x) => x.port === f.localPort);
    if (e !== undefined) {
      return `forward "${f.name}" would listen on port ${f.localPort}, which the pod exposes as "${e.name}"`;
    }
  }
  for (const e of merged.expose) {
    const mine = own.get(e.port);
    if (mine !== undefined && (e.host ?? '127.0.0.1') === '127.0.0.1') {
      return `expose "${e.name}" targets port ${e.port}, which is ${mine}`;
    }
  }
  return undefined;
}

/** The network's bootstrap peers: spec.bootstrap, then the relays the operator runs. */
export function bootstrapPeers(network: PeerNetwork): string[] {
  const all = [...(network.spec.bootstrap ?? []), ...(network.status?.relayAddresses ?? [])];
  // Dedupe keeping order; beyond the node's limit the later (operator-run) ones are dropped.
  return [...new Set(all)].slice(0, LIMITS.bootstrap);
}

/** The node config of the sidecar; only what differs from the node's defaults or must be explicit. */
export function renderNodeConfig(
  merged: Merged,
  network: PeerNetwork,
  settings: InjectSettings,
  terminationGracePeriodSeconds?: number,
): NodeConfigInput {
  const spec = network.spec;
  const config: NodeConfigInput = {
    role: 'sidecar',
    ...swarmKeyConfig(network),
    listen: [`/ip4/0.0.0.0/tcp/${settings.p2pPort}`],
    bootstrap: bootstrapPeers(network),
    dht: { protocol: spec.dht?.protocol ?? DEFAULTS.dhtProtocol },
    nat: {
      upnp: spec.nat?.upnp ?? DEFAULTS.natUpnp,
      natPmp: spec.nat?.natPmp ?? DEFAULTS.natNatPmp,
      holePunch: spec.nat?.holePunch ?? DEFAULTS.natHolePunch,
    },
    expose: merged.expose,
    forward: merged.forward,
    // All addresses, so the kubelet's probes reach it on the pod IP.
    admin: {
      listen: `0.0.0.0:${settings.adminPort}`,
      ...(settings.statusTokenSha256 === undefined ? {} : { statusTokenSha256: settings.statusTokenSha256 }),
    },
    log: { level: settings.logLevel },
    shutdown: { drainSeconds: drainSecondsFor(terminationGracePeriodSeconds) },
  };
  if ((spec.publicRanges ?? []).length > 0) config.publicRanges = spec.publicRanges;
  if (spec.trust !== undefined && settings.credentials !== undefined)
    config.trust = renderTrust(network, settings.credentials);
  // The node sizes its stream limits to the memory the container may use.
  const memoryMiB = memoryLimitMiB(settings.resources.limits.memory);
  if (memoryMiB !== undefined) config.limits = { memoryMiB };
  return config;
}

const QUANTITY_MIB: Record<string, number> = {
  '': 1 / 1024 ** 2,
  Ki: 1 / 1024,
  Mi: 1,
  Gi: 1024,
  Ti: 1024 ** 2,
  k: 1e3 / 1024 ** 2,
  M: 1e6 / 1024 ** 2,
  G: 1e9 / 1024 ** 2,
  T: 1e12 / 1024 ** 2,
};

/** A Kubernetes memory quantity (256Mi, 1Gi, 500M, 268435456) in whole MiB; undefined when unset or unreadable. */
export function memoryLimitMiB(quantity: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(quantity?.trim() ?? '');
  if (m === null) return undefined;
  const mib = Math.floor(Number(m[1]) * (QUANTITY_MIB[m[2] ?? ''] ?? 0));
  // The node's schema starts at 64 MiB; a smaller limit could not run it anyway.
  return mib >= 64 ? Math.min(mib, 1_048_576) : undefined;
}

/** Passes the restricted Pod Security Standard on its own, whatever the pod-level context says. */
export function sidecarSecurityContext(settings: InjectSettings): V1SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: settings.runAsUser,
    runAsGroup: settings.runAsGroup,
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

const probe = (path: string, periodSeconds: number, failureThreshold: number): V1Probe => ({
  httpGet: { path, port: ADMIN_PORT_NAME, scheme: 'HTTP' },
  periodSeconds,
  timeoutSeconds: 2,
  failureThreshold,
});

/** The container that runs `config`; the swarm key is a file of the `swarmKeyVolume`. */
export function renderContainer(config: NodeConfigInput, settings: InjectSettings): V1Container {
  const container: V1Container = {
    name: settings.containerName,
    image: settings.image,
    imagePullPolicy: settings.imagePullPolicy,
    args: [...SIDECAR_ARGS],
    env: [{ name: CONFIG_ENV, value: JSON.stringify(config) }],
    volumeMounts: [
      { name: SWARM_KEY_VOLUME, mountPath: SWARM_KEY_DIR, readOnly: true },
      ...(config.trust === undefined ? [] : trustMounts()),
    ],
    ports: [
      { name: P2P_PORT_NAME, containerPort: settings.p2pPort, protocol: 'TCP' },
      { name: ADMIN_PORT_NAME, containerPort: settings.adminPort, protocol: 'TCP' },
    ],
    // A native sidecar holds the next containers until this passes, so the app finds its forward
    // listeners bound; 60 s covers a slow image start without holding a broken pod for long.
    startupProbe: probe('/livez', 1, 60),
    livenessProbe: probe('/livez', 10, 3),
    readinessProbe: probe('/readyz', 5, 2),
    resources: {
      requests: { ...settings.resources.requests },
      limits: { ...settings.resources.limits },
    },
    securityContext: sidecarSecurityContext(settings),
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  if (settings.nativeSidecars) container.restartPolicy = 'Always';
  return container;
}

/** JSON with object keys sorted, so the hash does not depend on construction order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function sidecarHash(
  container: V1Container,
  tunnels: readonly string[],
  network: string,
  volume?: V1Volume,
  extraVolumes: readonly V1Volume[] = [],
): string {
  const volumes = extraVolumes.length === 0 ? undefined : extraVolumes;
  return createHash('sha256')
    .update(canonicalJson({ container, tunnels, network, volume, volumes }))
    .digest('hex')
    .slice(0, 16);
}

/** Renders the sidecar for the tunnels that select one pod. */
export function renderSidecar(input: RenderInput): RenderResult {
  const { network, settings } = input;
  const networkName = network.metadata.name ?? '';
  const tunnels = [...input.tunnels].sort((a, b) =>
    (a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1,
  );
  const names = tunnels.map((t) => t.metadata.name ?? '');
  const other = tunnels.find((t) => t.spec.networkRef.name !== networkName);
  if (other !== undefined) {
    return skipped(
      SkipReason.ConflictingTunnels,
      `tunnel ${other.metadata.name ?? '?'} joins network ${other.spec.networkRef.name}, not ${networkName}: a pod joins one network`,
    );
  }
  const merged = mergeTunnels(tunnels);
  if ('reason' in merged) return { kind: 'skipped', ...merged };
  const problem = portProblem(merged, settings, input.podPorts ?? []);
  if (problem !== undefined) return skipped(SkipReason.PortConflict, problem);

  const untrusted = trustProblem(network, settings);
  if (untrusted !== undefined) return skipped(SkipReason.NetworkNotReady, untrusted);
  const config = renderNodeConfig(merged, network, settings, input.terminationGracePeriodSeconds);
  if ((config.bootstrap ?? []).length === 0) {
    return skipped(
      SkipReason.NetworkNotReady,
      `network ${networkName} has no bootstrap peers yet: list spec.bootstrap, or wait for its relays to publish status.relayAddresses`,
    );
  }
  try {
    parseConfig(config);
  } catch (err) {
    // The CRD schema is looser than the node's (IPv6 details, say): refuse rather than inject a
    // sidecar that would exit at start.
    return skipped(SkipReason.InvalidConfig, err instanceof Error ? err.message : String(err));
  }
  const container = renderContainer(config, settings);
  const volume = swarmKeyVolume(network);
  const extraVolumes = config.trust === undefined ? [] : trustVolumes();
  return {
    kind: 'rendered',
    container,
    volume,
    extraVolumes,
    config,
    hash: sidecarHash(container, names, networkName, volume, extraVolumes),
    tunnels: names,
    network: networkName,
  };
}
