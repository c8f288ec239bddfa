/**
 * Sidecar injection as a pure function (Linkerd's pkg/inject, Istio's inject): a pod, the tunnels
 * and networks of its namespace and the settings → a JSON patch, or `skipped` with a reason code
 * that feeds events, logs and metrics.
 *
 * Idempotent: the patch records a hash of what it injected; a pod that already carries the same
 * sidecar is skipped as AlreadyInjected (webhook reinvocation, retried requests), and one that
 * carries another version of it gets that container replaced, never a second one.
 */
import type { V1Container, V1Pod, V1Volume } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import { escapePointerToken, type JsonPatchOp } from './jsonpatch.js';
import { type Skip, SkipReason } from './reasons.js';
import { renderSidecar } from './render.js';
import { matchesSelector } from './selector.js';
import { ALWAYS_EXCLUDED_NAMESPACES, type InjectSettings } from './settings.js';
import { tunnelPolicyProblem } from './tunnel-policy.js';

/** `"false"` (or `"disabled"`) as annotation or label opts a pod out. */
export const INJECT_ANNOTATION = 'peertunnel.io/inject';
/** The hash of the injected sidecar (`sidecarHash`): equal means up to date. */
export const HASH_ANNOTATION = 'peertunnel.io/sidecar-hash';
/** Comma-separated names of the tunnels merged into the sidecar. */
export const TUNNELS_ANNOTATION = 'peertunnel.io/tunnels';
/** The network the sidecar joined. */
export const NETWORK_ANNOTATION = 'peertunnel.io/network';

const OPT_OUT_VALUES = new Set(['false', 'disabled']);

export type InjectResult =
  | {
      kind: 'patch';
      patch: JsonPatchOp[];
      /** Names of the tunnels (in the pod's namespace) the sidecar serves, sorted. */
      tunnels: string[];
      network: string;
      hash: string;
      /** True when a sidecar of another version was replaced rather than added. */
      replaced: boolean;
    }
  | ({ kind: 'skipped' } & Skip);

const skip = (reason: Skip['reason'], message: string): InjectResult => ({
  kind: 'skipped',
  reason,
  message,
});

/** Namespaces that are never injected under these settings. */
export function isExcludedNamespace(namespace: string, settings: InjectSettings): boolean {
  return (
    namespace === settings.operatorNamespace ||
    ALWAYS_EXCLUDED_NAMESPACES.includes(namespace) ||
    settings.excludedNamespaces.includes(namespace)
  );
}

/** The tunnels of the pod's namespace that select it (tunnels being deleted select nothing). */
export function selectingTunnels(
  pod: V1Pod,
  namespace: string,
  tunnels: readonly PeerTunnel[],
): PeerTunnel[] {
  return tunnels
    .filter(
      (t) =>
        t.metadata.namespace === namespace &&
        t.metadata.deletionTimestamp === undefined &&
        matchesSelector(t.spec.selector, pod.metadata?.labels),
    )
    .sort((a, b) => ((a.metadata.name ?? '') < (b.metadata.name ?? '') ? -1 : 1));
}

interface Found {
  list: 'containers' | 'initContainers';
  index: number;
}

function findSidecar(pod: V1Pod, name: string): Found | undefined {
  for (const list of ['initContainers', 'containers'] as const) {
    const index = (pod.spec?.[list] ?? []).findIndex((c) => c.name === name);
    if (index >= 0) return { list, index };
  }
  return undefined;
}

function declaredPorts(pod: V1Pod, except: string): number[] {
  const all: V1Container[] = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])];
  return all.filter((c) => c.name !== except).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
}

function annotationOps(pod: V1Pod, wanted: Record<string, string>): JsonPatchOp[] {
  if (pod.metadata === undefined) return [{ op: 'add', path: '/metadata', value: { annotations: wanted } }];
  if (pod.metadata.annotations === undefined) {
    return [{ op: 'add', path: '/metadata/annotations', value: wanted }];
  }
  // `add` on an existing member replaces it (RFC 6902 4.1), so one op serves both cases.
  return Object.entries(wanted).map(([k, v]) => ({
    op: 'add',
    path: `/metadata/annotations/${escapePointerToken(k)}`,
    value: v,
  }));
}

function containerOps(
  pod: V1Pod,
  container: V1Container,
  native: boolean,
  found: Found | undefined,
): JsonPatchOp[] {
  const list = native ? 'initContainers' : 'containers';
  if (found !== undefined && found.list === list) {
    return [{ op: 'replace', path: `/spec/${list}/${found.index}`, value: container }];
  }
  const ops: JsonPatchOp[] = [];
  if (found !== undefined) {
    // The sidecar sits in the other list (the setting changed, or the pod was copied): move it.
    ops.push({ op: 'remove', path: `/spec/${found.list}/${found.index}` });
  }
  if (!native) ops.push({ op: 'add', path: '/spec/containers/-', value: container });
  else if (pod.spec?.initContainers === undefined) {
    ops.push({ op: 'add', path: '/spec/initContainers', value: [container] });
  } else {
    // First, so init containers that need the tunnel (a migration that reaches the database) get it.
    ops.push({ op: 'add', path: '/spec/initContainers/0', value: container });
  }
  return ops;
}

/** Adds the sidecar's volumes, or replaces ones of the same name (a sidecar of another version). */
function volumeOps(pod: V1Pod, wanted: readonly V1Volume[]): JsonPatchOp[] {
  const volumes = pod.spec?.volumes;
  if (volumes === undefined) return [{ op: 'add', path: '/spec/volumes', value: [...wanted] }];
  return wanted.map((volume): JsonPatchOp => {
    const index = volumes.findIndex((v) => v.name === volume.name);
    if (index >= 0) return { op: 'replace', path: `/spec/volumes/${index}`, value: volume };
    return { op: 'add', path: '/spec/volumes/-', value: volume };
  });
}

/**
 * Decides what to do with a pod being created. `tunnels` and `networks` may span namespaces; only
 * the pod's own are used. `pod.metadata.namespace` must be set (an AdmissionRequest carries the
 * namespace beside the object: the webhook copies it in).
 */
export function inject(
  pod: V1Pod,
  tunnels: readonly PeerTunnel[],
  networks: readonly PeerNetwork[],
  settings: InjectSettings,
): InjectResult {
  const namespace = pod.metadata?.namespace;
  if (namespace === undefined || namespace === '') {
    return skip(SkipReason.NamespaceUnknown, 'the pod has no namespace');
  }
  if (isExcludedNamespace(namespace, settings)) {
    return skip(SkipReason.NamespaceExcluded, `namespace ${namespace} is never injected`);
  }
  const optOut = pod.metadata?.annotations?.[INJECT_ANNOTATION] ?? pod.metadata?.labels?.[INJECT_ANNOTATION];
  if (optOut !== undefined && OPT_OUT_VALUES.has(optOut)) {
    return skip(SkipReason.OptedOut, `the pod sets ${INJECT_ANNOTATION}: "${optOut}"`);
  }
  const matching = selectingTunnels(pod, namespace, tunnels);
  if (matching.length === 0) return skip(SkipReason.NoMatchingTunnel, 'no PeerTunnel selects the pod');
  // Refused tunnels (an empty selector, a remote expose host the namespace may not have) inject
  // nothing; the others that select the pod still do.
  const refusals = matching.map((t) => tunnelPolicyProblem(t, settings.allowRemoteExposeNamespaces));
  const selecting = matching.filter((_t, i) => refusals[i] === undefined);
  const refused = refusals.find((r) => r !== undefined);
  if (selecting.length === 0 && refused !== undefined) return { kind: 'skipped', ...refused };
  const names = selecting.map((t) => t.metadata.name ?? '');
  if (pod.spec?.hostNetwork === true) {
    return skip(
      SkipReason.HostNetwork,
      `tunnels ${names.join(', ')} select the pod, but it uses the host network, where sidecars of several pods would take the same ports`,
    );
  }
  const networkNames = [...new Set(selecting.map((t) => t.spec.networkRef.name))];
  if (networkNames.length > 1) {
    const detail = selecting.map((t) => `${t.metadata.name ?? '?'} → ${t.spec.networkRef.name}`).join(', ');
    return skip(
      SkipReason.ConflictingTunnels,
      `tunnels select the pod for different networks (${detail}); a pod joins one network`,
    );
  }
  const networkName = networkNames[0] ?? '';
  const network = networks.find((n) => n.metadata.namespace === namespace && n.metadata.name === networkName);
  if (network === undefined || network.metadata.deletionTimestamp !== undefined) {
    return skip(
      SkipReason.NetworkMissing,
      `tunnels ${names.join(', ')} reference PeerNetwork ${networkName}, which does not exist in namespace ${namespace}`,
    );
  }
  const rendered = renderSidecar({
    tunnels: selecting,
    network,
    settings,
    podPorts: declaredPorts(pod, settings.containerName),
    terminationGracePeriodSeconds: pod.spec?.terminationGracePeriodSeconds,
  });
  if (rendered.kind === 'skipped') return rendered;

  const found = findSidecar(pod, settings.containerName);
  const wantList = settings.nativeSidecars ? 'initContainers' : 'containers';
  if (found?.list === wantList && pod.metadata?.annotations?.[HASH_ANNOTATION] === rendered.hash) {
    return skip(SkipReason.AlreadyInjected, `the pod already carries sidecar ${rendered.hash}`);
  }
  const patch = [
    ...containerOps(pod, rendered.container, settings.nativeSidecars, found),
    ...volumeOps(pod, [rendered.volume, ...rendered.extraVolumes]),
    ...annotationOps(pod, {
      [HASH_ANNOTATION]: rendered.hash,
      [TUNNELS_ANNOTATION]: rendered.tunnels.join(','),
      [NETWORK_ANNOTATION]: rendered.network,
    }),
  ];
  return {
    kind: 'patch',
    patch,
    tunnels: rendered.tunnels,
    network: rendered.network,
    hash: rendered.hash,
    replaced: found !== undefined,
  };
}
