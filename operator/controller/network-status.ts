/**
 * The PeerNetwork status as a pure function of what the reconciler found: the swarm key, the
 * relays it ensured (or why it could not), the tunnels that use the network. The reconciler does
 * the I/O; this decides the Ready condition and what is published.
 */
import { DEFAULTS, type PeerNetwork, type PeerNetworkStatus } from '../../crds/schema.js';
import { bootstrapPeers } from '../inject/render.js';
import { NetworkReason } from './reasons.js';
import { NotOwnedError, relaySpec } from './relay.js';
import type { SwarmKeyRollover } from './rollover-status.js';
import { type ConditionInput, type SwarmKeyState, setReady } from './status.js';

export interface NetworkFacts {
  network: PeerNetwork;
  swarmKey: SwarmKeyState;
  /** The next key's Secret, when spec.nextSwarmKeySecretRef names one. */
  nextSwarmKey?: SwarmKeyState;
  /** A rollover's progress, when spec.nextSwarmKeySecretRef is set. */
  rollover?: SwarmKeyRollover;
  /** PeerTunnels (not being deleted) whose networkRef names this network. */
  tunnels: number;
  /** Full addresses of the operator-run relays; undefined when relays are off or ensuring them failed. */
  relayAddresses: string[] | undefined;
  /** Why creating or updating the relays failed; undefined when it did not. */
  relayError: unknown;
  /** This cluster as an issuer of credentials, when the operator has a cluster name. */
  cluster?: { name: string; publicKey: string };
  now: Date;
}

/** The whole status of a network (conditions included), computed from the facts. */
export function computeNetworkStatus(f: NetworkFacts): PeerNetworkStatus {
  const { network, relayAddresses } = f;
  const status: PeerNetworkStatus = { observedGeneration: network.metadata.generation };
  if (relayAddresses !== undefined && relayAddresses.length > 0) status.relayAddresses = relayAddresses;
  if (f.cluster !== undefined) status.trust = { cluster: f.cluster.name, publicKey: f.cluster.publicKey };
  if (f.rollover !== undefined) status.swarmKeyRollover = f.rollover;
  else if (f.relayError !== undefined && network.status?.relayAddresses !== undefined) {
    // Keep what was published rather than pull bootstrap peers from under running sidecars.
    status.relayAddresses = network.status.relayAddresses;
  }
  status.conditions = setReady(
    network.status?.conditions,
    networkReady(f, status),
    network.metadata.generation,
    f.now,
  );
  return status;
}

/** The first reason that applies: the swarm key, then the relays' failure, then the bootstrap peers. */
function networkReady(f: NetworkFacts, status: PeerNetworkStatus): ConditionInput {
  const { network, tunnels } = f;
  const namespace = network.metadata.namespace ?? '';
  const usage = `${tunnels} PeerTunnel${tunnels === 1 ? '' : 's'} use${tunnels === 1 ? 's' : ''} this network.`;
  if (f.swarmKey !== 'ok') {
    const ref = network.spec.swarmKeySecretRef;
    const secretKey = ref.key ?? DEFAULTS.swarmKeySecretKey;
    const missing = f.swarmKey === 'secretMissing';
    return {
      status: 'False',
      reason: missing ? NetworkReason.SwarmKeySecretMissing : NetworkReason.SwarmKeyMissing,
      message: `${missing ? `Secret ${ref.name} does not exist` : `Secret ${ref.name} has no key "${secretKey}"`}: create it with kubectl -n ${namespace} create secret generic ${ref.name} --from-file=${secretKey}=swarm.key (peertunnel keygen > swarm.key, the same key in every cluster). Sidecars and relays cannot start without it. ${usage}`,
    };
  }
  const next = network.spec.nextSwarmKeySecretRef;
  if (next !== undefined && f.nextSwarmKey !== undefined && f.nextSwarmKey !== 'ok') {
    const key = next.key ?? DEFAULTS.swarmKeySecretKey;
    return {
      status: 'False',
      reason: NetworkReason.NextSwarmKeyMissing,
      message: `spec.nextSwarmKeySecretRef: ${f.nextSwarmKey === 'secretMissing' ? `Secret ${next.name} does not exist` : `Secret ${next.name} has no key "${key}"`}: create it with kubectl -n ${namespace} create secret generic ${next.name} --from-file=${key}=next.key (peertunnel keygen > next.key, the same key in every cluster), or remove the field. Members restarted meanwhile cannot start. ${usage}`,
    };
  }
  if (f.relayError instanceof NotOwnedError) {
    return {
      status: 'False',
      reason: NetworkReason.RelayObjectNotOwned,
      message: `${f.relayError.message}: the operator leaves it alone. Delete or rename it, or turn spec.relay off.`,
    };
  }
  if (f.relayError !== undefined) {
    return {
      status: 'False',
      reason: NetworkReason.RelayError,
      message: `could not create the relays: ${String(f.relayError)}. Check the operator's RBAC and the namespace's quota.`,
    };
  }
  const peers = bootstrapPeers({ ...network, status });
  const wanted = relaySpec(network)?.replicas ?? 0;
  const pending = wanted - (f.relayAddresses?.length ?? 0);
  if (peers.length === 0) {
    return {
      status: 'False',
      reason: NetworkReason.RelaysPending,
      message: `no relay address is known yet (Service type ${network.spec.relay?.serviceType ?? DEFAULTS.relayServiceType} without an address?): wait for the load balancer, or set spec.relay.announce. ${usage}`,
    };
  }
  return {
    status: 'True',
    reason: NetworkReason.Ready,
    message: `${peers.length} bootstrap peer${peers.length === 1 ? '' : 's'}${wanted > 0 ? ` (${wanted - pending} of ${wanted} operator-run relays with an address)` : ''}. ${usage}`,
  };
}
