/**
 * The PeerNetwork reconciler, in the order of design §7: get → gone? → (no finalizer: the relay
 * objects carry owner references, so the garbage collector removes them) → validate (the swarm
 * key) → ensure (relays when spec.relay.enabled, their removal otherwise) → status.
 */
import type { V1Deployment, V1Secret, V1Service } from '@kubernetes/client-node';
import { API_VERSION, DEFAULTS, type PeerNetwork, type PeerNetworkStatus } from '../../crds/schema.js';
import { type KubeClient, paths } from '../kube.js';
import { bootstrapPeers } from '../render.js';
import { isConflict } from '../runtime-errors.js';
import { type ReconcileContext, ReconcileError, type ReconcileOutcome, splitKey } from './context.js';
import { EventReason, NetworkReason, type NetworkReasonCode } from './reasons.js';
import {
  identityKey,
  identitySecretName,
  newIdentity,
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
import { type ConditionInput, readyCondition, sameStatus, setReady } from './status.js';
import { swarmKeyState } from './tunnel-reconciler.js';

export async function reconcileNetwork(ctx: ReconcileContext, key: string): Promise<ReconcileOutcome> {
  const { namespace, name } = splitKey(key);
  const network = ctx.caches.networks.get(name, namespace);
  if (network === undefined || network.metadata.deletionTimestamp != null) return {};

  let relayAddresses: string[] | undefined;
  let workError: unknown;
  let cond: ConditionInput | undefined;
  const keyState = swarmKeyState(ctx, network);
  const ref = network.spec.swarmKeySecretRef;
  const secretKey = ref.key ?? DEFAULTS.swarmKeySecretKey;
  const tunnels = ctx.caches.tunnels
    .list(namespace)
    .filter((t) => t.spec.networkRef.name === name && t.metadata.deletionTimestamp == null).length;
  const usage = `${tunnels} PeerTunnel${tunnels === 1 ? '' : 's'} use${tunnels === 1 ? 's' : ''} this network.`;
  if (keyState !== 'ok') {
    cond = {
      status: 'False',
      reason:
        keyState === 'secretMissing' ? NetworkReason.SwarmKeySecretMissing : NetworkReason.SwarmKeyMissing,
      message: `${keyState === 'secretMissing' ? `Secret ${ref.name} does not exist` : `Secret ${ref.name} has no key "${secretKey}"`}: create it with kubectl -n ${namespace} create secret generic ${ref.name} --from-file=${secretKey}=swarm.key (peertunnel keygen > swarm.key, the same key in every cluster). Sidecars and relays cannot start without it. ${usage}`,
    };
  }
  try {
    const spec = relaySpec(network);
    relayAddresses = spec === undefined ? undefined : await ensureRelays(ctx, network, spec);
    if (spec === undefined) await removeRelays(ctx.client, namespace, name, 0);
  } catch (err) {
    workError = err;
    cond ??= {
      status: 'False',
      reason: NetworkReason.RelayError,
      message: `could not create the relays: ${String(err)}. Check the operator's RBAC and the namespace's quota.`,
    };
  }
  const status: PeerNetworkStatus = { observedGeneration: network.metadata.generation };
  if (relayAddresses !== undefined && relayAddresses.length > 0) status.relayAddresses = relayAddresses;
  else if (workError !== undefined && network.status?.relayAddresses !== undefined) {
    // Keep what was published rather than pull bootstrap peers from under running sidecars.
    status.relayAddresses = network.status.relayAddresses;
  }
  if (cond === undefined) {
    const peers = bootstrapPeers({ ...network, status });
    const wanted = relaySpec(network)?.replicas ?? 0;
    const pending = wanted - (relayAddresses?.length ?? 0);
    cond =
      peers.length === 0
        ? {
            status: 'False',
            reason: NetworkReason.RelaysPending,
            message: `no relay address is known yet (Service type ${network.spec.relay?.serviceType ?? DEFAULTS.relayServiceType} without an address?): wait for the load balancer, or set spec.relay.announce. ${usage}`,
          }
        : {
            status: 'True',
            reason: NetworkReason.Ready as NetworkReasonCode,
            message: `${peers.length} bootstrap peer${peers.length === 1 ? '' : 's'}${wanted > 0 ? ` (${wanted - pending} of ${wanted} operator-run relays with an address)` : ''}. ${usage}`,
          };
  }
  status.conditions = setReady(network.status?.conditions, cond, network.metadata.generation, ctx.now());

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
  const name = network.metadata.name ?? '';
  const ids = (await ensureIdentities(ctx, network, spec.replicas)).map(peerIdOf);
  const services: V1Service[] = [];
  for (let i = 0; i < spec.replicas; i++) {
    const svc = renderRelayService(network, spec, i);
    services.push(await ctx.client.apply<V1Service>(paths.service(namespace, svc.metadata?.name ?? ''), svc));
  }
  const announce = services.map((svc, i) => replicaAddresses(spec, i, svc));
  const full = announce.map((addrs, i) => addrs.map((a) => `${a}/p2p/${ids[i] ?? ''}`));
  for (let i = 0; i < spec.replicas; i++) {
    const peers = full.filter((_, j) => j !== i).flat();
    const config = renderRelayConfig(network, spec, announce[i] ?? [], peers, ctx.settings);
    const dep = renderRelayDeployment(network, spec, i, config, ctx.settings);
    await ctx.client.apply<V1Deployment>(paths.deployment(namespace, dep.metadata?.name ?? ''), dep);
  }
  await removeRelays(ctx.client, namespace, name, spec.replicas);
  return full.flat();
}

/** Deletes relay Deployments and Services of index >= `keep` (scale-down, or relay disabled). */
async function removeRelays(client: KubeClient, namespace: string, network: string, keep: number) {
  const selector = `${RELAY_OF_LABEL}=${network}`;
  const tooMany = (o: { metadata?: { labels?: Record<string, string> } }) =>
    Number(o.metadata?.labels?.['peertunnel.io/relay-index'] ?? '0') >= keep;
  const deps = await client.list<V1Deployment>(`/apis/apps/v1/namespaces/${namespace}/deployments`, {
    labelSelector: selector,
  });
  for (const d of deps.items.filter(tooMany))
    await client.delete(paths.deployment(namespace, d.metadata?.name ?? ''));
  const svcs = await client.list<V1Service>(paths.services(namespace), { labelSelector: selector });
  for (const s of svcs.items.filter(tooMany))
    await client.delete(paths.service(namespace, s.metadata?.name ?? ''));
}
