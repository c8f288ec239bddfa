/**
 * The PeerTunnel reconciler, in the order of docs/architecture.md (Reconcilers): get → gone? → (no finalizer) → validate →
 * ensure → status. Nothing is created for a tunnel (the webhook injects, pods are the user's), so
 * "ensure" is gathering what the sidecars report. No finalizer: deleting a tunnel leaves nothing of
 * ours to clean up; pods still running its sidecar are told about in events.
 */
import type { V1Pod, V1Secret } from '@kubernetes/client-node';
import { ContractError } from '../../contracts/errors.js';
import type { SidecarReport } from '../../contracts/sidecar-status.js';
import { API_VERSION, CONDITION_READY, type PeerNetwork, type PeerTunnel } from '../../crds/schema.js';
import { paths } from '../kube/client.js';
import { type ReconcileContext, ReconcileError, type ReconcileOutcome, splitKey } from './context.js';
import { EventReason } from './reasons.js';
import {
  computeTunnelStatus,
  podsSelectedBy,
  readyCondition,
  type SwarmKeyState,
  sameStatus,
  sidecarReady,
  tunnelsOfPod,
} from './status.js';
import { withTunnelTrust } from './trust-status.js';

/** The cache (metadata only) says whether the Secret exists; its data is read only then. */
export async function swarmKeyState(
  ctx: ReconcileContext,
  network: PeerNetwork,
  ref: PeerNetwork['spec']['swarmKeySecretRef'] = network.spec.swarmKeySecretRef,
): Promise<SwarmKeyState> {
  const namespace = network.metadata.namespace ?? '';
  const cached = ctx.caches.secrets.get(ref.name, namespace);
  if (cached === undefined || cached.metadata?.deletionTimestamp != null) return 'secretMissing';
  const secret = await ctx.client.find<V1Secret>(paths.secret(namespace, ref.name));
  if (secret === undefined || secret.metadata?.deletionTimestamp != null) return 'secretMissing';
  const value = secret.data?.[ref.key ?? 'swarm.key'] ?? secret.stringData?.[ref.key ?? 'swarm.key'];
  return value === undefined || value === '' ? 'keyMissing' : 'ok';
}

export async function reconcileTunnel(ctx: ReconcileContext, key: string): Promise<ReconcileOutcome> {
  const { namespace, name } = splitKey(key);
  // get
  const tunnel = ctx.caches.tunnels.get(name, namespace);
  // gone?
  if (tunnel === undefined || tunnel.metadata.deletionTimestamp != null) {
    await tellPodsOfDeletedTunnel(ctx, namespace, name);
    return {};
  }
  let status: PeerTunnel['status'];
  let workError: unknown;
  try {
    // validate: the network and its key (computeTunnelStatus turns them into the condition).
    const network = ctx.caches.networks.get(tunnel.spec.networkRef.name, namespace);
    const swarmKey = network === undefined ? 'secretMissing' : await swarmKeyState(ctx, network);
    // ensure: what the ready sidecars see.
    const pods = ctx.caches.pods.list(namespace);
    const reports = await gatherReports(ctx, tunnel, pods);
    status = computeTunnelStatus({
      tunnel,
      network,
      swarmKey,
      pods,
      containerName: ctx.settings.containerName,
      allowRemoteExposeNamespaces: ctx.settings.allowRemoteExposeNamespaces,
      reports,
      now: ctx.now(),
    });
    status = withTunnelTrust(status, tunnel, network, reports);
  } catch (err) {
    workError = err;
  }
  let statusError: unknown;
  if (status !== undefined) {
    try {
      await writeTunnelStatus(ctx, tunnel, status);
    } catch (err) {
      statusError = err;
    }
  }
  if (workError !== undefined || statusError !== undefined)
    throw new ReconcileError(key, workError, statusError);
  return { requeueAfterMs: ctx.statusIntervalMs };
}

async function gatherReports(
  ctx: ReconcileContext,
  tunnel: PeerTunnel,
  pods: readonly V1Pod[],
): Promise<Map<string, SidecarReport>> {
  const name = tunnel.metadata.name ?? '';
  const ready = podsSelectedBy(tunnel, pods).filter(
    (p) =>
      tunnelsOfPod(p, ctx.settings.containerName).includes(name) &&
      sidecarReady(p, ctx.settings.containerName),
  );
  const out = new Map<string, SidecarReport>();
  await Promise.all(
    ready.map(async (p) => {
      const podName = p.metadata?.name ?? '';
      try {
        const r = await ctx.sidecarStatus(p);
        if (r !== undefined) out.set(podName, r);
      } catch (err) {
        if (!(err instanceof ContractError)) throw err;
        // A sidecar whose /status this operator cannot read (another version?): not counted.
        ctx.metrics.sidecarStatusInvalid.inc();
        ctx.logger.warn(
          {
            event: 'sidecar_status_invalid',
            namespace: p.metadata?.namespace,
            pod: podName,
            field: err.field,
          },
          `sidecar /status not understood: ${err.message}`,
        );
      }
    }),
  );
  return out;
}

/** The one status exit: writes only when something changed; events on a change of Ready. */
async function writeTunnelStatus(ctx: ReconcileContext, tunnel: PeerTunnel, status: PeerTunnel['status']) {
  if (sameStatus(tunnel.status, status)) return;
  const before = readyCondition(tunnel.status?.conditions);
  const after = readyCondition(status?.conditions);
  const { namespace = '', name = '' } = tunnel.metadata;
  await ctx.client.apply(`${paths.tunnel(namespace, name)}/status`, {
    apiVersion: API_VERSION,
    kind: 'PeerTunnel',
    metadata: { name, namespace },
    status,
  });
  ctx.metrics.statusWrites.inc({ kind: 'PeerTunnel' });
  if (after !== undefined && (before?.status !== after.status || before?.reason !== after.reason)) {
    await ctx.events.record(
      { ...tunnel, apiVersion: API_VERSION, kind: 'PeerTunnel' },
      {
        type: after.status === 'True' ? 'Normal' : 'Warning',
        reason: after.reason,
        note: after.message,
      },
    );
  }
  ctx.logger.debug(
    { event: 'status_written', kind: 'PeerTunnel', namespace, name, reason: after?.reason },
    `${CONDITION_READY}=${after?.status ?? '?'}`,
  );
}

/** Pods still running the sidecar of a deleted tunnel: one Warning event each (recorded once). */
async function tellPodsOfDeletedTunnel(ctx: ReconcileContext, namespace: string, name: string) {
  const pods = ctx.caches.pods
    .list(namespace)
    .filter((p) => tunnelsOfPod(p, ctx.settings.containerName).includes(name));
  for (const pod of pods) {
    await ctx.events.record(
      { ...pod, apiVersion: 'v1', kind: 'Pod' },
      {
        type: 'Warning',
        reason: EventReason.TunnelDeleted,
        note: `PeerTunnel ${name} was deleted, but this pod still runs its sidecar (container ${ctx.settings.containerName}) with the old config: delete the pod, or restart its Deployment, to remove it.`,
        once: true,
      },
    );
  }
}
