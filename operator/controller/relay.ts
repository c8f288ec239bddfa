/**
 * The relay/bootstrap nodes of a PeerNetwork (spec.relay), rendered as pure objects: per replica a
 * Deployment (one pod: an identity must never run twice) and a Service (a load balancer across
 * different peer IDs would break /p2p/ addressing), plus one Secret holding every replica's
 * Ed25519 identity, so addresses survive restarts. Identity generation is the only impure part.
 */
import type { V1Deployment, V1Service } from '@kubernetes/client-node';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { DEFAULTS, type PeerNetwork } from '../../crds/schema.js';
import { CONFIG_ENV, type NodeConfigInput, parseConfig } from '../../sidecar/config/config.js';
import { INJECT_ANNOTATION } from '../inject/inject.js';
import {
  ADMIN_PORT_NAME,
  P2P_PORT_NAME,
  SWARM_KEY_DIR,
  SWARM_KEY_VOLUME,
  sidecarSecurityContext,
  swarmKeyVolume,
} from '../inject/render.js';
import type { InjectSettings } from '../inject/settings.js';
import { swarmKeyConfig } from '../inject/swarm-key.js';

export const RELAY_OF_LABEL = 'peertunnel.io/relay-of';
export const RELAY_INDEX_LABEL = 'peertunnel.io/relay-index';
const IDENTITY_DIR = '/var/run/peertunnel';

export const relayName = (network: string, i: number) => `${network}-relay-${i}`;
export const identitySecretName = (network: string) => `${network}-relay-identity`;
export const identityKey = (i: number) => `identity-${i}`;

export function ownerReference(network: PeerNetwork) {
  return {
    apiVersion: network.apiVersion,
    kind: network.kind,
    name: network.metadata.name ?? '',
    uid: network.metadata.uid ?? '',
    controller: true,
    blockOwnerDeletion: false,
  };
}

/** Whether `obj` names `network` as its controlling owner (what the operator puts on what it creates). */
export function ownedBy(
  obj: { metadata?: { ownerReferences?: Array<{ uid?: string; controller?: boolean }> } },
  network: PeerNetwork,
): boolean {
  const uid = network.metadata.uid;
  return (
    uid !== undefined &&
    (obj.metadata?.ownerReferences ?? []).some((r) => r.uid === uid && r.controller === true)
  );
}

/** An object the operator would write exists and is not the network's: it is left alone. */
export class NotOwnedError extends Error {
  constructor(
    readonly kind: string,
    readonly objectName: string,
  ) {
    super(`${kind} ${objectName} exists and was not created by this PeerNetwork (no owner reference to it)`);
    this.name = 'NotOwnedError';
  }
}

function labels(network: PeerNetwork, i?: number): Record<string, string> {
  const l: Record<string, string> = {
    'app.kubernetes.io/name': 'peertunnel-relay',
    'app.kubernetes.io/managed-by': 'peertunnel-operator',
    [RELAY_OF_LABEL]: network.metadata.name ?? '',
  };
  if (i !== undefined) l[RELAY_INDEX_LABEL] = String(i);
  return l;
}

/** A new identity, as the protobuf bytes `peertunnel identity` writes, in base64. */
export async function newIdentity(): Promise<string> {
  return Buffer.from(privateKeyToProtobuf(await generateKeyPair('Ed25519'))).toString('base64');
}

/** The peer ID of a base64 protobuf identity. */
export function peerIdOf(identityBase64: string): string {
  return peerIdFromPrivateKey(privateKeyFromProtobuf(Buffer.from(identityBase64, 'base64'))).toString();
}

export interface RelaySpec {
  replicas: number;
  port: number;
  serviceType: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  announce: string[];
}

export function relaySpec(network: PeerNetwork): RelaySpec | undefined {
  const r = network.spec.relay;
  if (r?.enabled !== true) return undefined;
  return {
    replicas: r.replicas ?? DEFAULTS.relayReplicas,
    port: r.port ?? DEFAULTS.relayPort,
    serviceType: r.serviceType ?? DEFAULTS.relayServiceType,
    announce: r.announce ?? [],
  };
}

/**
 * The addresses (without /p2p/) under which replica `i` is reached: the announced ones when given
 * (all of them with one replica; the i-th with several), else what its Service offers: the load
 * balancer's ingress, or the cluster IP (reachable inside the cluster only).
 */
export function replicaAddresses(spec: RelaySpec, i: number, service: V1Service | undefined): string[] {
  if (spec.announce.length > 0) {
    if (spec.replicas === 1) return spec.announce;
    const a = spec.announce[i];
    if (a !== undefined) return [a];
  }
  if (service === undefined) return [];
  const out: string[] = [];
  if (spec.serviceType === 'LoadBalancer') {
    for (const ing of service.status?.loadBalancer?.ingress ?? []) {
      if (ing.ip !== undefined)
        out.push(`/${ing.ip.includes(':') ? 'ip6' : 'ip4'}/${ing.ip}/tcp/${spec.port}`);
      else if (ing.hostname !== undefined) out.push(`/dns/${ing.hostname}/tcp/${spec.port}`);
    }
    return out;
  }
  const ip = service.spec?.clusterIP;
  if (ip !== undefined && ip !== '' && ip !== 'None') {
    out.push(`/${ip.includes(':') ? 'ip6' : 'ip4'}/${ip}/tcp/${spec.port}`);
  }
  return out;
}

export function renderRelayService(network: PeerNetwork, spec: RelaySpec, i: number): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: relayName(network.metadata.name ?? '', i),
      namespace: network.metadata.namespace,
      labels: labels(network, i),
      ownerReferences: [ownerReference(network)],
    },
    spec: {
      type: spec.serviceType,
      selector: labels(network, i),
      ports: [{ name: P2P_PORT_NAME, port: spec.port, targetPort: P2P_PORT_NAME, protocol: 'TCP' }],
      // From outside the cluster the relay must see each peer's own address: it is what peers
      // learn as their public address (hole punching) and what per-address limits count.
      // `Cluster` would masquerade every peer as a node's address.
      ...(spec.serviceType === 'ClusterIP' ? {} : { externalTrafficPolicy: 'Local' }),
    },
  };
}

/** The relay's node config; `peers` are the other replicas' full addresses (DHT servers meet). */
export function renderRelayConfig(
  network: PeerNetwork,
  spec: RelaySpec,
  announce: string[],
  peers: string[],
  settings: InjectSettings,
): NodeConfigInput {
  const config: NodeConfigInput = {
    role: 'relay',
    ...swarmKeyConfig(network),
    identity: { file: `${IDENTITY_DIR}/identity.key` },
    listen: [`/ip4/0.0.0.0/tcp/${spec.port}`],
    announce,
    bootstrap: [...(network.spec.bootstrap ?? []), ...peers].slice(0, 64),
    dht: { protocol: network.spec.dht?.protocol ?? DEFAULTS.dhtProtocol, server: 'always' },
    admin: { listen: `0.0.0.0:${settings.adminPort}` },
    log: { level: settings.logLevel },
  };
  if ((network.spec.publicRanges ?? []).length > 0) config.publicRanges = network.spec.publicRanges;
  // The same validation the node runs at start: a config it would refuse is a bug here.
  parseConfig(config);
  return config;
}

export function renderRelayDeployment(
  network: PeerNetwork,
  spec: RelaySpec,
  i: number,
  config: NodeConfigInput,
  settings: InjectSettings,
): V1Deployment {
  const name = relayName(network.metadata.name ?? '', i);
  const probe = (path: string, period: number) => ({
    httpGet: { path, port: ADMIN_PORT_NAME, scheme: 'HTTP' },
    periodSeconds: period,
    timeoutSeconds: 2,
    failureThreshold: 3,
  });
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name,
      namespace: network.metadata.namespace,
      labels: labels(network, i),
      ownerReferences: [ownerReference(network)],
    },
    spec: {
      replicas: 1,
      // Never two pods with one identity, not even during a rollout.
      strategy: { type: 'Recreate' },
      selector: { matchLabels: labels(network, i) },
      template: {
        metadata: {
          labels: labels(network, i),
          // The relay is not an application pod: the webhook must leave it alone.
          annotations: { [INJECT_ANNOTATION]: 'false' },
        },
        spec: {
          automountServiceAccountToken: false,
          // fsGroup: the identity Secret's files are root's and 0440; without the group the
          // relay's non-root user cannot read them (the kubelet gives them this group).
          securityContext: {
            runAsNonRoot: true,
            fsGroup: settings.runAsGroup,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'relay',
              image: settings.image,
              imagePullPolicy: settings.imagePullPolicy,
              args: ['node'],
              env: [{ name: CONFIG_ENV, value: JSON.stringify(config) }],
              ports: [
                { name: P2P_PORT_NAME, containerPort: spec.port, protocol: 'TCP' },
                { name: ADMIN_PORT_NAME, containerPort: settings.adminPort, protocol: 'TCP' },
              ],
              livenessProbe: probe('/livez', 10),
              readinessProbe: probe('/livez', 5),
              resources: {
                requests: { ...settings.resources.requests },
                limits: { ...settings.resources.limits },
              },
              securityContext: sidecarSecurityContext(settings),
              volumeMounts: [
                { name: 'identity', mountPath: IDENTITY_DIR, readOnly: true },
                { name: SWARM_KEY_VOLUME, mountPath: SWARM_KEY_DIR, readOnly: true },
              ],
            },
          ],
          volumes: [
            swarmKeyVolume(network),
            {
              name: 'identity',
              secret: {
                secretName: identitySecretName(network.metadata.name ?? ''),
                items: [{ key: identityKey(i), path: 'identity.key' }],
                defaultMode: 0o440,
              },
            },
          ],
        },
      },
    },
  };
}
