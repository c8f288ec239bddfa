/**
 * Status as pure functions: conditions (lastTransitionTime moves only when the status does), the
 * PeerTunnel status from the pods, the network and the sidecars' reports, and the comparison that
 * decides whether a status is written at all.
 */
import type { V1ContainerStatus, V1Pod } from '@kubernetes/client-node';
import { LIMITS } from '../../contracts/limits.js';
import { type TunnelPath, tunnelPathOf } from '../../contracts/paths.js';
import type { ReportedProvider, SidecarReport } from '../../contracts/sidecar-status.js';
import {
  CONDITION_READY,
  type Condition,
  DEFAULTS,
  type PeerNetwork,
  type PeerTunnel,
  type PeerTunnelStatus,
} from '../../crds/schema.js';
import { INJECT_ANNOTATION, TUNNELS_ANNOTATION } from '../inject/inject.js';
import { SkipReason } from '../inject/reasons.js';
import { bootstrapPeers, canonicalJson } from '../inject/render.js';
import { matchesSelector } from '../inject/selector.js';
import { tunnelPolicyProblem } from '../inject/tunnel-policy.js';
import { TunnelReason, type TunnelReasonCode } from './reasons.js';

export interface ConditionInput {
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** Sets the Ready condition (meta.SetStatusCondition semantics); other conditions are kept. */
export function setReady(
  previous: readonly Condition[] | undefined,
  next: ConditionInput,
  generation: number | undefined,
  now: Date,
): Condition[] {
  const old = (previous ?? []).find((c) => c.type === CONDITION_READY);
  const cond: Condition = {
    type: CONDITION_READY,
    status: next.status,
    reason: next.reason,
    message: next.message.slice(0, 32768),
    lastTransitionTime:
      old !== undefined && old.status === next.status
        ? old.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  if (generation !== undefined) cond.observedGeneration = generation;
  return [...(previous ?? []).filter((c) => c.type !== CONDITION_READY), cond];
}

/** Equal as Kubernetes stores them (key order and absent-vs-undefined do not matter). */
export function sameStatus(a: unknown, b: unknown): boolean {
  return canonicalJson(a ?? {}) === canonicalJson(b ?? {});
}

export const readyCondition = (conditions: readonly Condition[] | undefined): Condition | undefined =>
  conditions?.find((c) => c.type === CONDITION_READY);

// ---------------------------------------------------------------------------------------------
// Sidecar reports: the part of a sidecar's /status the operator reads (contracts/sidecar-status.ts).

/**
 * Whether a provider a sidecar lists is one a status may count. A forwarder keeps listing a dead
 * exposer for minutes (its DHT record outlives it): only a provider that is not backing off, and
 * either connected now or never failed since its last success, counts.
 */
export function isLiveProvider(p: ReportedProvider): boolean {
  return p.healthy && (p.connected || p.failures === 0);
}

// ---------------------------------------------------------------------------------------------
// Pods

const OPT_OUT = new Set(['false', 'disabled']);

export function isActivePod(pod: V1Pod): boolean {
  const phase = pod.status?.phase;
  return pod.metadata?.deletionTimestamp == null && phase !== 'Succeeded' && phase !== 'Failed';
}

/** Pods the tunnel is responsible for: selected by it, active, and not opted out. */
export function podsSelectedBy(tunnel: PeerTunnel, pods: readonly V1Pod[]): V1Pod[] {
  const ns = tunnel.metadata.namespace;
  return pods.filter((p) => {
    if (p.metadata?.namespace !== ns || !isActivePod(p)) return false;
    const optOut = p.metadata?.annotations?.[INJECT_ANNOTATION] ?? p.metadata?.labels?.[INJECT_ANNOTATION];
    if (optOut !== undefined && OPT_OUT.has(optOut)) return false;
    return matchesSelector(tunnel.spec.selector, p.metadata?.labels);
  });
}

/** The tunnels (by name) whose sidecar a pod carries, from the annotation the webhook writes. */
export function tunnelsOfPod(pod: V1Pod, containerName: string): string[] {
  const has = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].some(
    (c) => c.name === containerName,
  );
  if (!has) return [];
  const list = pod.metadata?.annotations?.[TUNNELS_ANNOTATION] ?? '';
  return list === '' ? [] : list.split(',');
}

export function sidecarContainerStatus(pod: V1Pod, containerName: string): V1ContainerStatus | undefined {
  return [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])].find(
    (s) => s.name === containerName,
  );
}

/** Ready as the kubelet reports it (the sidecar's readiness probe is its /readyz). */
export function sidecarReady(pod: V1Pod, containerName: string): boolean {
  return sidecarContainerStatus(pod, containerName)?.ready === true;
}

// ---------------------------------------------------------------------------------------------
// PeerTunnel status

export type SwarmKeyState = 'ok' | 'secretMissing' | 'keyMissing';

export interface TunnelFacts {
  tunnel: PeerTunnel;
  network: PeerNetwork | undefined;
  swarmKey: SwarmKeyState;
  /** Pods of the tunnel's namespace (the cache's). */
  pods: readonly V1Pod[];
  containerName: string;
  /** The operator's setting: namespaces whose tunnels may expose non-loopback hosts. */
  allowRemoteExposeNamespaces?: readonly string[];
  /** Reports of ready injected pods, by pod name; a pod whose /status failed is absent. */
  reports: ReadonlyMap<string, SidecarReport>;
  now: Date;
}

function combinePaths(paths: readonly TunnelPath[]): TunnelPath {
  const kinds = new Set(paths.filter((p) => p !== 'none'));
  if (kinds.size === 0) return 'none';
  if (kinds.size > 1) return 'mixed';
  return [...kinds][0] ?? 'none';
}

function names(pods: readonly V1Pod[]): string {
  const n = pods.map((p) => p.metadata?.name ?? '?').sort();
  return n.length > 5 ? `${n.slice(0, 5).join(', ')} and ${n.length - 5} more` : n.join(', ');
}

/** The whole status of a tunnel (conditions included), computed from the facts. */
export function computeTunnelStatus(f: TunnelFacts): PeerTunnelStatus {
  const { tunnel, containerName } = f;
  const ns = tunnel.metadata.namespace ?? '';
  const tunnelName = tunnel.metadata.name ?? '';
  const selected = podsSelectedBy(tunnel, f.pods);
  const injected = selected.filter((p) => tunnelsOfPod(p, containerName).includes(tunnelName));
  const missing = selected.filter((p) => !injected.includes(p));
  const ready = injected.filter((p) => sidecarReady(p, containerName));
  const reports = ready.flatMap((p) => {
    const r = f.reports.get(p.metadata?.name ?? '');
    return r === undefined ? [] : [r];
  });

  const forwards = (tunnel.spec.forward ?? []).map((fw) => {
    const peers = new Set<string>();
    const paths: TunnelPath[] = [];
    for (const r of reports) {
      for (const p of r.forwards.find((x) => x.name === fw.name)?.providers ?? []) {
        // Counted when any ready sidecar sees it live.
        if (!isLiveProvider(p)) continue;
        peers.add(p.peer);
        if (p.connected && p.path !== null) paths.push(tunnelPathOf(p.path));
      }
    }
    return { name: fw.name, providers: peers.size, path: combinePaths(paths) };
  });
  const exposes = (tunnel.spec.expose ?? []).map((e) => ({
    name: e.name,
    ready: reports.filter((r) => r.exposes.some((x) => x.name === e.name)).length,
  }));

  const status: PeerTunnelStatus = {
    observedGeneration: tunnel.metadata.generation,
    pods: {
      selected: selected.length,
      injected: injected.length,
      ready: ready.length,
    },
    summary: {
      pods: `${ready.length}/${selected.length}`,
      providers: forwards.length === 0 ? '-' : String(Math.min(...forwards.map((x) => x.providers))),
      path: forwards.length === 0 ? '-' : combinePaths(forwards.map((x) => x.path)),
    },
  };
  if (missing.length > 0 && status.pods !== undefined) {
    status.pods.missingSidecar = missing
      .map((p) => p.metadata?.name ?? '')
      .sort()
      .slice(0, LIMITS.missingSidecar);
  }
  if (forwards.length > 0) status.forwards = forwards;
  if (exposes.length > 0) status.exposes = exposes;

  const cond = tunnelReady(f, { selected, injected, missing, ready, reports: reports.length, forwards, ns });
  status.conditions = setReady(tunnel.status?.conditions, cond, tunnel.metadata.generation, f.now);
  return status;
}

function tunnelReady(
  f: TunnelFacts,
  s: {
    selected: V1Pod[];
    injected: V1Pod[];
    missing: V1Pod[];
    ready: V1Pod[];
    reports: number;
    forwards: Array<{ name: string; providers: number; path: TunnelPath }>;
    ns: string;
  },
): ConditionInput & { reason: TunnelReasonCode } {
  const no = (reason: TunnelReasonCode, message: string) => ({ status: 'False' as const, reason, message });
  const refused = tunnelPolicyProblem(f.tunnel, f.allowRemoteExposeNamespaces ?? []);
  if (refused !== undefined) {
    return no(
      refused.reason === SkipReason.SelectorSelectsEverything
        ? TunnelReason.SelectorSelectsEverything
        : TunnelReason.RemoteExposeNotAllowed,
      refused.message,
    );
  }
  const net = f.network;
  const netName = f.tunnel.spec.networkRef.name;
  if (net === undefined || net.metadata.deletionTimestamp != null) {
    return no(
      TunnelReason.NetworkNotFound,
      `PeerNetwork ${netName} does not exist in namespace ${s.ns}: create it, or fix spec.networkRef.name. New pods get no sidecar until then.`,
    );
  }
  if (f.swarmKey !== 'ok') {
    const ref = net.spec.swarmKeySecretRef;
    const key = ref.key ?? DEFAULTS.swarmKeySecretKey;
    const what =
      f.swarmKey === 'secretMissing'
        ? `Secret ${ref.name} does not exist`
        : `Secret ${ref.name} has no key "${key}"`;
    return no(
      TunnelReason.SwarmKeySecretMissing,
      `${what} (the swarm key of PeerNetwork ${netName}): sidecars cannot start without it. Create it with: kubectl -n ${s.ns} create secret generic ${ref.name} --from-file=${key}=swarm.key (peertunnel keygen > swarm.key, the same key in every cluster).`,
    );
  }
  if (bootstrapPeers(net).length === 0) {
    return no(
      TunnelReason.NetworkNotReady,
      `PeerNetwork ${netName} has no bootstrap peers yet: list spec.bootstrap, or wait for its relays to publish status.relayAddresses. New pods get no sidecar until then.`,
    );
  }
  const selector = canonicalJson(f.tunnel.spec.selector);
  if (s.selected.length === 0) {
    return no(
      TunnelReason.NoPodsSelected,
      `no running pod in namespace ${s.ns} matches spec.selector ${selector}: check the pods' labels.`,
    );
  }
  if (s.missing.length > 0) {
    return no(
      TunnelReason.PodsMissingSidecar,
      `${s.missing.length} of ${s.selected.length} selected pods were created without the sidecar (${names(s.missing)}): delete them, or restart their Deployment, so the webhook injects it.`,
    );
  }
  if (s.ready.length < s.injected.length) {
    const notReady = s.injected.filter((p) => !s.ready.includes(p));
    return no(
      TunnelReason.SidecarsNotReady,
      `${s.ready.length} of ${s.injected.length} sidecars are ready; not ready: ${names(notReady)}. See kubectl -n ${s.ns} logs POD -c ${f.containerName}, and the sidecar's /status.`,
    );
  }
  if (s.reports === 0 && (s.forwards.length > 0 || (f.tunnel.spec.expose ?? []).length > 0)) {
    return no(
      TunnelReason.SidecarStatusUnavailable,
      `the operator cannot read /status of any ready sidecar: allow it to reach the sidecars' admin port (NetworkPolicy).`,
    );
  }
  const empty = s.forwards.filter((x) => x.providers === 0).map((x) => x.name);
  if (empty.length > 0) {
    return no(
      TunnelReason.NoProviders,
      `no pod exposing ${empty.map((n) => `"${n}"`).join(', ')} is known to the sidecars: check that a PeerTunnel exposes it in a PeerNetwork with the same swarm key and bootstrap peers, and that its sidecars are ready.`,
    );
  }
  const fw = s.forwards.map((x) => `${x.name}: ${x.providers} providers, ${x.path}`).join('; ');
  return {
    status: 'True',
    reason: TunnelReason.Ready,
    message: `${s.ready.length} of ${s.selected.length} pods carry a ready sidecar${fw === '' ? '' : `; ${fw}`}.`,
  };
}
