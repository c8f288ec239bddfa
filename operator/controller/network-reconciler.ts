/**
 * The PeerNetwork reconciler, in the order of docs/architecture.md (Reconcilers): get → gone? → (no finalizer: the relay
 * objects carry owner references, so the garbage collector removes them) → validate (the swarm
 * key) → ensure (relays when spec.relay.enabled, their removal otherwise) → status.
 */
import type { V1Deployment, V1Secret, V1Service } from '@kubernetes/client-node';
import { API_VERSION, type PeerNetwork, type PeerNetworkStatus } from '../../crds/schema.js';
import { isConflict } from '../errors.js';
import { type KubeClient, paths } from '../kube/client.js';
import { type ReconcileContext, ReconcileError, type ReconcileOutcome, splitKey } from './context.js';
import { computeNetworkStatus } from './network-status.js';
import { EventReason } from './reasons.js';
import {
  identityKey,
  identitySecretName,
  NotOwnedError,
  newIdentity,
  ownedBy,
  ownerReference,
  peerIdOf,
  RELAY_OF_LABEL,
  type RelaySpec,
  relaySpec,
  renderRelayConfig,
  renderRelayDeployment,
  renderRelayService,
  replicaAddresses,
} from './relay.js';
import { computeRollover, networkReports, type SwarmKeyRollover } from './rollover-status.js';
import { readyCondition, sameStatus } from './status.js';
import { swarmKeyState } from './tunnel-reconciler.js';

export async function reconcileNetwork(ctx: ReconcileContext, key: string): Promise<ReconcileOutcome> {
  const { namespace, name } = splitKey(key);
  // get
  const network = ctx.caches.networks.get(name, namespace);
  // gone?
  if (network === undefined || network.metadata.deletionTimestamp != null) return {};
  // validate: the swarm key (computeNetworkStatus turns it into the condition). The Secret is read
  // with a get, not from the metadata-only cache; a failed read fails the reconcile (retried).
  const swarmKey = await swarmKeyState(ctx, network);
  const nextRef = network.spec.nextSwarmKeySecretRef;
  const nextSwarmKey = nextRef === undefined ? undefined : await swarmKeyState(ctx, network, nextRef);
  const tunnels = ctx.caches.tunnels
    .list(namespace)
    .filter((t) => t.spec.networkRef.name === name && t.metadata.deletionTimestamp == null).length;
  // ensure: the relays, or their removal.
  let relayAddresses: string[] | undefined;
  let workError: unknown;
  try {
    const spec = relaySpec(network);
    relayAddresses = spec === undefined ? undefined : await ensureRelays(ctx, network, spec);
    if (spec === undefined) await removeRelays(ctx.client, network, 0);
  } catch (err) {
    workError = err;
  }
  // A rollover: what the ready sidecars report of their keys.
  let rollover: SwarmKeyRollover | undefined;
  if (nextRef !== undefined) {
    try {
      rollover = computeRollover(await networkReports(ctx, network));
    } catch (err) {
      workError ??= err;
    }
  }
  // status
  const cred = ctx.settings.credentials;
  const status = computeNetworkStatus({
    network,
    swarmKey,
    ...(nextSwarmKey === undefined ? {} : { nextSwarmKey }),
    ...(rollover === undefined ? {} : { rollover }),
    tunnels,
    relayAddresses,
    relayError: workError,
    ...(cred === undefined ? {} : { cluster: { name: cred.cluster, publicKey: cred.publicKey } }),
    now: ctx.now(),
  });
  let statusError: unknown;
  try {
    await writeNetworkStatus(ctx, network, status);
  } catch (err) {
    statusError = err;
  }
  if (workError !== undefined || statusError !== undefined)
    throw new ReconcileError(key, workError, statusError);
  return { requeueAfterMs: ctx.networkResyncMs };
}

async function writeNetworkStatus(ctx: ReconcileContext, network: PeerNetwork, status: PeerNetworkStatus) {
  if (sameStatus(network.status, status)) return;
  const { namespace = '', name = '' } = network.metadata;
  const before = readyCondition(network.status?.conditions);
  const after = readyCondition(status.conditions);
  await ctx.client.apply(`${paths.network(namespace, name)}/status`, {
    apiVersion: API_VERSION,
    kind: 'PeerNetwork',
    metadata: { name, namespace },
    status,
  });
  ctx.metrics.statusWrites.inc({ kind: 'PeerNetwork' });
  if (after !== undefined && (before?.status !== after.status || before?.reason !== after.reason)) {
    await ctx.events.record(
      { ...network, apiVersion: API_VERSION, kind: 'PeerNetwork' },
      { type: after.status === 'True' ? 'Normal' : 'Warning', reason: after.reason, note: after.message },
    );
  }
}

/** The identity Secret with one key per replica; keys are never replaced, only added. */
async function ensureIdentities(
  ctx: ReconcileContext,
  network: PeerNetwork,
  replicas: number,
): Promise<string[]> {
  const namespace = network.metadata.namespace ?? '';
  const secretName = identitySecretName(network.metadata.name ?? '');
  for (let attempt = 0; ; attempt++) {
    const existing = await ctx.client.find<V1Secret>(paths.secret(namespace, secretName));
    if (existing !== undefined && !ownedBy(existing, network)) throw new NotOwnedError('Secret', secretName);
    const data: Record<string, string> = { ...(existing?.data ?? {}) };
    let added = false;
    for (let i = 0; i < replicas; i++) {
      if (data[identityKey(i)] === undefined) {
        data[identityKey(i)] = await newIdentity();
        added = true;
      }
    }
    const ids = Array.from({ length: replicas }, (_, i) => data[identityKey(i)] ?? '');
    if (!added) return ids;
    try {
      if (existing === undefined) {
        await ctx.client.create(paths.secrets(namespace), {
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: {
            name: secretName,
            namespace,
            labels: { [RELAY_OF_LABEL]: network.metadata.name ?? '' },
            ownerReferences: [ownerReference(network)],
          },
          type: 'Opaque',
          data,
        });
      } else {
        // Optimistic concurrency: a conflict means someone else added keys; read again.
        await ctx.client.replace(paths.secret(namespace, secretName), { ...existing, data });
      }
      await ctx.events.record(
        { ...network, apiVersion: API_VERSION, kind: 'PeerNetwork' },
        {
          type: 'Normal',
          reason: EventReason.RelayUpdated,
          note: `relay identities stored in Secret ${secretName}`,
        },
      );
      return ids;
    } catch (err) {
      if (!isConflict(err) || attempt >= 3) throw err;
    }
  }
}

async function ensureRelays(ctx: ReconcileContext, network: PeerNetwork, spec: RelaySpec): Promise<string[]> {
  const namespace = network.metadata.namespace ?? '';
  const ids = (await ensureIdentities(ctx, network, spec.replicas)).map(peerIdOf);
  const services: V1Service[] = [];
  for (let i = 0; i < spec.replicas; i++) {
    const svc = renderRelayService(network, spec, i);
    await refuseNotOwned(ctx, network, 'Service', paths.service(namespace, svc.metadata?.name ?? ''));
    services.push(await ctx.client.apply<V1Service>(paths.service(namespace, svc.metadata?.name ?? ''), svc));
  }
  const announce = services.map((svc, i) => replicaAddresses(spec, i, svc));
  const full = announce.map((addrs, i) => addrs.map((a) => `${a}/p2p/${ids[i] ?? ''}`));
  for (let i = 0; i < spec.replicas; i++) {
    const peers = full.filter((_, j) => j !== i).flat();
    const config = renderRelayConfig(network, spec, announce[i] ?? [], peers, ctx.settings);
    const dep = renderRelayDeployment(network, spec, i, config, ctx.settings);
    await refuseNotOwned(ctx, network, 'Deployment', paths.deployment(namespace, dep.metadata?.name ?? ''));
    await ctx.client.apply<V1Deployment>(paths.deployment(namespace, dep.metadata?.name ?? ''), dep);
  }
  await removeRelays(ctx.client, network, spec.replicas);
  return full.flat();
}

/**
 * Server-side apply with force would take over an object of the same name that someone else made;
 * one the network does not own is refused instead (the Ready condition says which).
 */
async function refuseNotOwned(ctx: ReconcileContext, network: PeerNetwork, kind: string, path: string) {
  const existing = await ctx.client.find<V1Service | V1Deployment>(path);
  if (existing !== undefined && !ownedBy(existing, network))
    throw new NotOwnedError(kind, existing.metadata?.name ?? path);
}

/** Deletes the network's relay Deployments and Services of index >= `keep` (scale-down, or relay disabled). */
async function removeRelays(client: KubeClient, network: PeerNetwork, keep: number) {
  const namespace = network.metadata.namespace ?? '';
  const selector = `${RELAY_OF_LABEL}=${network.metadata.name ?? ''}`;
  // The label alone could be anyone's: only what the network owns is deleted.
  const tooMany = (o: V1Deployment | V1Service) =>
    ownedBy(o, network) && Number(o.metadata?.labels?.['peertunnel.io/relay-index'] ?? '0') >= keep;
  const deps = await client.list<V1Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments`, {
    labelSelector: selector,
  });
  for (const d of deps.items.filter(tooMany))
    await client.delete(paths.deployment(namespace, d.metadata?.name ?? ''));
  const svcs = await client.list<V1Service>(paths.services(namespace), { labelSelector: selector });
  for (const s of svcs.items.filter(tooMany))
    await client.delete(paths.service(namespace, s.metadata?.name ?? ''));
}
