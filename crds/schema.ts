/**
 * Over 300 lines on purpose: both CRDs' types and their OpenAPI schema stay side by side, field by field.
 *
 * PeerNetwork and PeerTunnel (peertunnel.io/v1alpha1): the one source of truth for both their
 * TypeScript types and the `openAPIV3Schema` of their CRDs (`crds/generate.ts` writes the YAML).
 *
 * Limits are the node config's (`contracts/limits.ts`), and a service name is a DNS label as in the
 * node config, so what the API server accepts renders a sidecar config the node accepts. What a
 * structural schema cannot say is a CEL rule with a message that names the intent, not the CEL.
 */
import type { V1ObjectMeta } from '@kubernetes/client-node';
import { LIMITS } from '../contracts/limits.js';
import { TUNNEL_PATHS } from '../contracts/paths.js';
import { DEFAULT_DHT_PROTOCOL, SERVICE_NAME_PATTERN } from '../sidecar/config/config.js';
import {
  arr,
  bool,
  enumOf,
  type Infer,
  int,
  type JsonSchemaProps,
  map,
  obj,
  opt,
  req,
  type Schema,
  str,
} from './builder.js';
import { allowFrom, networkTrustSpec, networkTrustStatus, tunnelTrustStatus } from './trust-schema.js';

export const GROUP = 'peertunnel.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CATEGORY = 'peertunnel-io';

/** Defaults the API server fills in; code that reads objects not yet defaulted uses the same values. */
export const DEFAULTS = {
  swarmKeySecretKey: 'swarm.key',
  dhtProtocol: DEFAULT_DHT_PROTOCOL,
  relayEnabled: false,
  relayReplicas: 1,
  relayServiceType: 'LoadBalancer',
  relayPort: 4001,
  natUpnp: false,
  natNatPmp: false,
  natHolePunch: true,
} as const;

/** Condition type and reasons of status.conditions (reasons are what a user acts on). */
export const CONDITION_READY = 'Ready';

// ---------------------------------------------------------------------------------------------
// Patterns. Each must mean the same in ECMAScript (tests) and RE2 (the API server).

const DNS_LABEL = SERVICE_NAME_PATTERN.source;
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const SECRET_KEY = '^[-._a-zA-Z0-9]+$';
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = `(${OCTET}\\.){3}${OCTET}`;
/** Loose on purpose: the sidecar's parseConfig (run by render) checks an IPv6 address fully. */
const IPV6 = '[0-9a-fA-F.]*:[0-9a-fA-F:.]*';
const IP = `^(${IPV4}|${IPV6})$`;
const CIDR = `^(${IPV4}/(3[0-2]|[12]?[0-9])|${IPV6}/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$`;
const PORT = '([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])';
const HOSTNAME =
  '[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*';
/** Base58btc peer IDs: Ed25519 (12D3KooW...), RSA (Qm...), secp256k1 (16Uiu2HA...). */
const PEER_ID =
  '(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|Qm[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45})';
/** A TCP address as sidecar/config/address-check.ts reads it (a private network runs over TCP only). */
const TCP_ADDR = `/(ip4/${IPV4}|ip6/${IPV6}|(dns|dns4|dns6)/${HOSTNAME})/tcp/${PORT}`;
const MULTIADDR = `^${TCP_ADDR}$`;
const MULTIADDR_WITH_PEER = `^(${TCP_ADDR}|/dnsaddr/${HOSTNAME})/p2p/${PEER_ID}$`;
/** The IPv6 pattern is loose: CEL's isIP checks the address of an /ip6/ multiaddr. */
const IP6_MULTIADDR_RULE = {
  rule: "!self.startsWith('/ip6/') || isIP(self.split('/')[2])",
  message: 'the address after /ip6/ is not a valid IPv6 address',
  reason: 'FieldValueInvalid',
} as const;
const LABEL_KEY =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$';
const LABEL_VALUE = '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$';
const CONDITION_REASON = '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$';
const PROTOCOL_ID = '^/[!-~]+$';

// ---------------------------------------------------------------------------------------------
// Shared pieces

const serviceName = (description: string) =>
  str({
    description: `${description} A DNS label: 1-63 lowercase letters, digits or "-", starting and ending with a letter or digit.`,
    maxLength: 63,
    minLength: 1,
    pattern: DNS_LABEL,
  });

const port = (description: string) => int({ description, minimum: 1, maximum: 65535, format: 'int32' });

const count = (description: string) => int({ description, minimum: 0, maximum: 2147483647, format: 'int32' });

const observedGeneration = int({
  description: 'The metadata.generation of the spec that this status describes.',
  minimum: 0,
  maximum: Number.MAX_SAFE_INTEGER,
  format: 'int64',
});

/** metav1.Condition, as Kubernetes API conventions define it. */
const condition = obj(
  {
    type: req(
      str({
        description: 'The kind of condition, e.g. Ready.',
        maxLength: 316,
        pattern:
          '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$',
      }),
    ),
    status: req(
      enumOf({ description: 'Whether the condition holds.', values: ['True', 'False', 'Unknown'] }),
    ),
    observedGeneration: opt(
      int({
        description: 'The metadata.generation that the condition was computed from.',
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        format: 'int64',
      }),
    ),
    lastTransitionTime: req(
      str({
        description: 'When the condition last changed status (RFC 3339).',
        format: 'date-time',
        maxLength: 64,
      }),
    ),
    reason: req(
      str({
        description: 'A CamelCase code for why the condition is in its status; stable, for tools to match.',
        minLength: 1,
        maxLength: 1024,
        pattern: CONDITION_REASON,
      }),
    ),
    message: req(
      str({ description: 'What happened and what to do about it, for a person.', maxLength: 32768 }),
    ),
  },
  { description: 'One condition of the object (Kubernetes API conventions).' },
);

const conditions = arr(condition, {
  description: `Conditions of the object. "${CONDITION_READY}" tells whether it works, and its reason why not.`,
  maxItems: LIMITS.conditions,
  listType: 'map',
  mapKeys: ['type'],
});

// ---------------------------------------------------------------------------------------------
// PeerNetwork

const swarmKeySecretRef = obj(
  {
    name: req(
      str({
        description: "Name of the Secret, in the PeerNetwork's namespace, that holds the swarm key.",
        maxLength: 253,
        minLength: 1,
        pattern: DNS_SUBDOMAIN,
      }),
    ),
    key: opt(
      str({
        description:
          'Key in the Secret whose value is the swarm key, in the kubo/go-libp2p swarm.key format (`peertunnel keygen` writes one).',
        maxLength: 253,
        minLength: 1,
        pattern: SECRET_KEY,
        default: DEFAULTS.swarmKeySecretKey,
      }),
    ),
  },
  {
    description:
      'The Secret holding the pre-shared key of this private network. Nodes without the same key cannot connect to its members.',
  },
);

const bootstrapAddr = str({
  description:
    'A multiaddr with the peer ID, e.g. /dns4/relay.example.net/tcp/4001/p2p/12D3KooW... (TCP: a private network does not use QUIC).',
  maxLength: 512,
  pattern: MULTIADDR_WITH_PEER,
  validations: [IP6_MULTIADDR_RULE],
});

const relay = obj(
  {
    enabled: opt(
      bool({
        description:
          'Run bootstrap/relay nodes for this network in this namespace (a Deployment and a Service). Their addresses appear in status.relayAddresses and are given to the sidecars as bootstrap peers.',
        default: DEFAULTS.relayEnabled,
      }),
    ),
    replicas: opt(
      int({
        description: 'How many relay nodes to run; each has its own identity.',
        minimum: 1,
        maximum: LIMITS.relayReplicas,
        format: 'int32',
        default: DEFAULTS.relayReplicas,
      }),
    ),
    serviceType: opt(
      enumOf({
        description:
          'Type of the Service in front of the relays. Nodes in other clusters must reach it, which usually means LoadBalancer.',
        values: ['ClusterIP', 'NodePort', 'LoadBalancer'],
        default: DEFAULTS.relayServiceType,
      }),
    ),
    port: opt(
      int({
        description: 'TCP port the relays listen on and the Service exposes.',
        minimum: 1,
        maximum: 65535,
        format: 'int32',
        default: DEFAULTS.relayPort,
      }),
    ),
    announce: opt(
      arr(
        str({
          description:
            'A multiaddr without the peer ID under which other clusters reach the relays, e.g. /dns4/relay.example.net/tcp/4001.',
          maxLength: 512,
          pattern: MULTIADDR,
          validations: [IP6_MULTIADDR_RULE],
        }),
        {
          description:
            'Addresses the relays announce instead of the ones they observe, for when the Service address is not the public one (a DNS name on a LoadBalancer, a NAT in front of a NodePort).',
          maxItems: LIMITS.announce,
          listType: 'set',
        },
      ),
    ),
  },
  { description: 'Bootstrap/relay nodes run by the operator for this network.' },
);

const dht = obj(
  {
    protocol: opt(
      str({
        description: `The Kademlia DHT protocol string of this network; every member must use the same. Default ${DEFAULT_DHT_PROTOCOL}; kubo uses /ipfs/kad/1.0.0.`,
        maxLength: 256,
        pattern: PROTOCOL_ID,
        default: DEFAULTS.dhtProtocol,
      }),
    ),
  },
  { description: "The DHT in which members find each other's services." },
);

const nat = obj(
  {
    upnp: opt(
      bool({
        description:
          'Ask the gateway for a port mapping over UPnP-IGD. In a pod this usually needs host networking to reach the gateway.',
        default: DEFAULTS.natUpnp,
      }),
    ),
    natPmp: opt(
      bool({ description: 'Ask the gateway for a port mapping over NAT-PMP.', default: DEFAULTS.natNatPmp }),
    ),
    holePunch: opt(
      bool({
        description:
          'Upgrade relayed connections to direct ones by hole punching (DCUtR over TCP) when both NATs allow it.',
        default: DEFAULTS.natHolePunch,
      }),
    ),
  },
  { description: 'How members get through NAT. A relay is always the last resort.' },
);

export const peerNetworkSpecSchema = obj(
  {
    swarmKeySecretRef: req(swarmKeySecretRef),
    nextSwarmKeySecretRef: opt({
      ...swarmKeySecretRef,
      json: {
        ...swarmKeySecretRef.json,
        description:
          'The Secret holding the key a rollover brings in: members accept connections under either key and dial with this one first. Roll it in (restart every member), wait for status.swarmKeyRollover.oldKeyInUse to be false, then make it swarmKeySecretRef and remove this field (restart again).',
      },
    }),
    bootstrap: opt(
      arr(bootstrapAddr, {
        description:
          'Bootstrap/relay peers that already run somewhere reachable. Required unless relay.enabled is true.',
        maxItems: LIMITS.bootstrap,
        listType: 'set',
      }),
    ),
    relay: opt(relay),
    dht: opt(dht),
    publicRanges: opt(
      arr(
        str({
          description: 'A CIDR range such as 203.0.113.0/24.',
          maxLength: 49,
          pattern: CIDR,
        }),
        {
          description:
            'Address ranges that count as reachable between sites. Empty means the public internet ranges; an all-private WAN or a lab lists its own.',
          maxItems: LIMITS.publicRanges,
          listType: 'set',
        },
      ),
    ),
    nat: opt(nat),
    trust: opt(networkTrustSpec),
  },
  {
    description: 'A private libp2p network that PeerTunnels in this namespace join.',
    validations: [
      {
        rule: '(has(self.bootstrap) && size(self.bootstrap) > 0) || (has(self.relay) && has(self.relay.enabled) && self.relay.enabled)',
        message:
          'members need somewhere to meet: list at least one bootstrap peer, or set relay.enabled to run relays',
        fieldPath: '.bootstrap',
        reason: 'FieldValueRequired',
      },
      {
        rule: "!has(self.nextSwarmKeySecretRef) || self.nextSwarmKeySecretRef.name != self.swarmKeySecretRef.name || (has(self.nextSwarmKeySecretRef.key) ? self.nextSwarmKeySecretRef.key : 'swarm.key') != (has(self.swarmKeySecretRef.key) ? self.swarmKeySecretRef.key : 'swarm.key')",
        message:
          'nextSwarmKeySecretRef names the same Secret key as swarmKeySecretRef: a rollover needs a new key',
        fieldPath: '.nextSwarmKeySecretRef',
        reason: 'FieldValueInvalid',
      },
    ],
  },
);

export const peerNetworkStatusSchema = obj(
  {
    observedGeneration: opt(observedGeneration),
    conditions: opt(conditions),
    relayAddresses: opt(
      arr(
        str({
          description: 'A multiaddr with the peer ID of a relay run by the operator.',
          maxLength: 512,
        }),
        {
          description: 'Addresses of the relays the operator runs for this network (spec.relay).',
          maxItems: LIMITS.relayAddresses,
          listType: 'atomic',
        },
      ),
    ),
    swarmKeyRollover: opt(
      obj(
        {
          sidecarsReporting: req(count('Ready sidecars of this network whose /status the operator read.')),
          sidecarsWithNextKey: req(count('Of those, the ones that hold the next key.')),
          connectionsOnCurrentKey: req(count('Their open connections under the current (old) key.')),
          connectionsOnNextKey: req(count('Their open connections under the next key.')),
          oldKeyInUse: req(
            bool({
              description:
                'False once every reporting sidecar holds the next key and none of their connections uses the current one: the next key may then become swarmKeySecretRef.',
            }),
          ),
        },
        { description: 'Progress of a swarm-key rollover (spec.nextSwarmKeySecretRef set).' },
      ),
    ),
    trust: opt(networkTrustStatus),
  },
  { description: 'What the operator observed of this network.' },
);

// ---------------------------------------------------------------------------------------------
// PeerTunnel

const labelSelector = obj(
  {
    matchLabels: opt(
      map(
        str({
          description: 'A label value.',
          maxLength: 63,
          pattern: LABEL_VALUE,
        }),
        {
          description: 'Pods must carry each of these labels with exactly this value.',
          maxProperties: LIMITS.matchLabels,
        },
      ),
    ),
    matchExpressions: opt(
      arr(
        obj(
          {
            key: req(
              str({
                description: 'The label key.',
                maxLength: 317,
                minLength: 1,
                pattern: LABEL_KEY,
              }),
            ),
            operator: req(
              enumOf({
                description:
                  'In: the label has one of the values. NotIn: it has none of them (or is absent). Exists / DoesNotExist: the label is present / absent, whatever its value.',
                values: ['In', 'NotIn', 'Exists', 'DoesNotExist'],
              }),
            ),
            values: opt(
              arr(str({ description: 'A label value.', maxLength: 63, pattern: LABEL_VALUE }), {
                description: 'The values for In and NotIn; must be empty for Exists and DoesNotExist.',
                maxItems: LIMITS.expressionValues,
                listType: 'atomic',
              }),
            ),
          },
          {
            description: 'One requirement on a label.',
            validations: [
              {
                rule: "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                message: 'values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist',
                fieldPath: '.values',
                reason: 'FieldValueInvalid',
              },
            ],
          },
        ),
        {
          description: 'Requirements on labels; all must hold.',
          maxItems: LIMITS.matchExpressions,
          listType: 'atomic',
        },
      ),
    ),
  },
  {
    description:
      'Which pods of this namespace get the sidecar (a label selector; matchLabels and matchExpressions all must hold). It must name at least one label: a selector that selects every pod of the namespace is refused.',
    // A selector is one value to server-side apply: merging two selectors field by field is wrong.
    mapType: 'atomic',
    validations: [
      {
        rule: '(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)',
        message:
          'the selector selects every pod of the namespace: name at least one label in matchLabels or matchExpressions',
        reason: 'FieldValueRequired',
      },
    ],
  },
);

const expose = obj(
  {
    name: req(serviceName('The service name other clusters forward to.')),
    port: req(
      port(
        'The port of the application in the pod that each incoming connection is sent to. Nothing in a connection can choose another port.',
      ),
    ),
    host: opt(
      str({
        description:
          'The IP address the sidecar dials for each incoming connection. Default 127.0.0.1: the application in the same pod. Any other address is refused unless the operator setting allowRemoteExposeNamespaces (Helm value operator.allowRemoteExposeNamespaces) lists this namespace; link-local (the cloud metadata service), unspecified, multicast and broadcast addresses never.',
        maxLength: 45,
        pattern: IP,
        validations: [
          {
            // ip() refuses IPv4-mapped IPv6 addresses, so ::ffff:169.254.169.254 is refused too.
            rule: 'isIP(self) && (ip(self).isLoopback() || ip(self).isGlobalUnicast())',
            message:
              'expected a loopback or unicast IP address: link-local (the cloud metadata service), unspecified, multicast and broadcast addresses are never a target',
            reason: 'FieldValueForbidden',
          },
        ],
      }),
    ),
    allowFrom: opt(allowFrom),
  },
  { description: 'A port of the selected pods offered to the network under a service name.' },
);

const forward = obj(
  {
    name: req(serviceName('The service name to reach: one that pods elsewhere expose.')),
    localPort: req(
      port(
        'The port on 127.0.0.1 in the pod where the application connects; each connection is carried to a pod that exposes the name.',
      ),
    ),
  },
  {
    description: 'A local port of the selected pods that reaches a service exposed elsewhere in the network.',
  },
);

export const peerTunnelSpecSchema = obj(
  {
    networkRef: req(
      obj(
        {
          name: req(
            str({
              description: 'Name of the PeerNetwork in this namespace.',
              maxLength: 253,
              minLength: 1,
              pattern: DNS_SUBDOMAIN,
            }),
          ),
        },
        { description: 'The PeerNetwork, in the same namespace, that this tunnel joins.' },
      ),
    ),
    selector: req(labelSelector),
    expose: opt(
      arr(expose, {
        description:
          'Ports of the selected pods offered to the network. Several pods exposing one name are replicas.',
        maxItems: LIMITS.exposes,
        listType: 'map',
        mapKeys: ['name'],
      }),
    ),
    forward: opt(
      arr(forward, {
        description: 'Local ports of the selected pods that reach services exposed elsewhere.',
        maxItems: LIMITS.forwards,
        listType: 'map',
        mapKeys: ['name'],
        validations: [
          {
            rule: 'self.all(f, self.exists_one(g, g.localPort == f.localPort))',
            message: 'localPort values must be unique: each forward listens on its own port',
            // Not FieldValueDuplicate: the API server prints that reason without the message.
            reason: 'FieldValueInvalid',
          },
        ],
      }),
    ),
  },
  {
    description: 'Which pods get the sidecar, which network they join, and what they expose and forward.',
    validations: [
      {
        rule: '(has(self.expose) && size(self.expose) > 0) || (has(self.forward) && size(self.forward) > 0)',
        message: 'a PeerTunnel needs at least one entry in expose or forward',
        fieldPath: '.expose',
        reason: 'FieldValueRequired',
      },
      {
        rule: '!has(self.expose) || !has(self.forward) || self.forward.all(f, !self.expose.exists(e, e.port == f.localPort))',
        message:
          'a forward localPort cannot be an exposed port: that port belongs to the application in the pod',
        fieldPath: '.forward',
        reason: 'FieldValueInvalid',
      },
    ],
  },
);

export const peerTunnelStatusSchema = obj(
  {
    observedGeneration: opt(observedGeneration),
    conditions: opt(conditions),
    pods: opt(
      obj(
        {
          selected: req(count('Running or pending pods that the selector selects.')),
          injected: req(count('Selected pods that carry the sidecar for this tunnel.')),
          ready: req(count('Injected pods whose sidecar is ready.')),
          missingSidecar: opt(
            arr(str({ description: 'A pod name.', maxLength: 253 }), {
              description: `Selected pods created without the sidecar (before the tunnel existed, or while the webhook was down): recreate them to inject it. At most ${LIMITS.missingSidecar} are named.`,
              maxItems: LIMITS.missingSidecar,
              listType: 'atomic',
            }),
          ),
        },
        { description: 'The pods this tunnel selects.' },
      ),
    ),
    forwards: opt(
      arr(
        obj(
          {
            name: req(serviceName('The forwarded service name.')),
            providers: req(count('Distinct pods exposing the name that the ready sidecars know of.')),
            path: req(
              enumOf({
                description:
                  'How the sidecars reach the providers: none (no connection yet), direct, hole-punched, port-mapped, relayed, or mixed (different pods, different paths).',
                values: TUNNEL_PATHS,
              }),
            ),
          },
          { description: 'What the sidecars see of one forwarded service.' },
        ),
        {
          description: 'One entry per spec.forward, gathered from the ready sidecars.',
          maxItems: LIMITS.forwards,
          listType: 'map',
          mapKeys: ['name'],
        },
      ),
    ),
    exposes: opt(
      arr(
        obj(
          {
            name: req(serviceName('The exposed service name.')),
            ready: req(count('Ready sidecars that announce the name.')),
          },
          { description: 'What the sidecars report of one exposed service.' },
        ),
        {
          description: 'One entry per spec.expose, gathered from the ready sidecars.',
          maxItems: LIMITS.exposes,
          listType: 'map',
          mapKeys: ['name'],
        },
      ),
    ),
    summary: opt(
      obj(
        {
          pods: opt(str({ description: 'Ready pods over selected pods, e.g. 2/3.', maxLength: 32 })),
          providers: opt(
            str({
              description: 'The fewest providers any forward sees, e.g. 2; "-" when the tunnel only exposes.',
              maxLength: 32,
            }),
          ),
          path: opt(
            str({
              description: 'The path of the forwards, e.g. direct or relayed; mixed when they differ.',
              maxLength: 32,
            }),
          ),
          refused: opt(
            str({
              description: 'Credential refusals the sidecars report now, e.g. 3; "-" without credentials.',
              maxLength: 32,
            }),
          ),
        },
        { description: 'One-word summaries that `kubectl get peertunnels` shows as columns.' },
      ),
    ),
    trust: opt(tunnelTrustStatus),
  },
  { description: 'What the operator observed of this tunnel.' },
);

// ---------------------------------------------------------------------------------------------
// Types

export type PeerNetworkSpec = Infer<typeof peerNetworkSpecSchema>;
export type PeerNetworkStatus = Infer<typeof peerNetworkStatusSchema>;
export type PeerTunnelSpec = Infer<typeof peerTunnelSpecSchema>;
export type PeerTunnelStatus = Infer<typeof peerTunnelStatusSchema>;
export type LabelSelector = Infer<typeof labelSelector>;
export type LabelSelectorRequirement = NonNullable<LabelSelector['matchExpressions']>[number];
export type TunnelExpose = Infer<typeof expose>;
export type TunnelForward = Infer<typeof forward>;
export type Condition = Infer<typeof condition>;
export type NetworkTrustSpec = Infer<typeof networkTrustSpec>;
export type TunnelTrustStatus = Infer<typeof tunnelTrustStatus>;

export interface PeerNetwork {
  apiVersion: typeof API_VERSION;
  kind: 'PeerNetwork';
  metadata: V1ObjectMeta;
  spec: PeerNetworkSpec;
  status?: PeerNetworkStatus;
}

export interface PeerTunnel {
  apiVersion: typeof API_VERSION;
  kind: 'PeerTunnel';
  metadata: V1ObjectMeta;
  spec: PeerTunnelSpec;
  status?: PeerTunnelStatus;
}

// ---------------------------------------------------------------------------------------------
// CRDs

function rootSchema(kind: string, description: string, spec: Schema<unknown>, status: Schema<unknown>) {
  const root: JsonSchemaProps = {
    type: 'object',
    description,
    properties: {
      apiVersion: {
        type: 'string',
        description:
          'APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.',
      },
      kind: {
        type: 'string',
        description: `Kind is a string value representing the REST resource this object represents (${kind}).`,
      },
      // The API server refuses anything but `type: object` here (it owns ObjectMeta's schema).
      metadata: { type: 'object' },
      spec: spec.json,
      status: status.json,
    },
    required: ['spec'],
  };
  return root;
}

interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'boolean' | 'date';
  jsonPath: string;
  description: string;
  priority?: number;
}

const readyColumns: PrinterColumn[] = [
  {
    name: 'Ready',
    type: 'string',
    jsonPath: `.status.conditions[?(@.type=="${CONDITION_READY}")].status`,
    description: 'Whether it works.',
  },
  {
    name: 'Reason',
    type: 'string',
    jsonPath: `.status.conditions[?(@.type=="${CONDITION_READY}")].reason`,
    description: 'Why it is (not) ready.',
    priority: 1,
  },
];

const ageColumn: PrinterColumn = {
  name: 'Age',
  type: 'date',
  jsonPath: '.metadata.creationTimestamp',
  description: 'Time since creation.',
};

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: {
      kind: string;
      listKind: string;
      plural: string;
      singular: string;
      shortNames: string[];
      categories: string[];
    };
    scope: 'Namespaced';
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: PrinterColumn[];
      schema: { openAPIV3Schema: JsonSchemaProps };
    }>;
  };
}

function crd(o: {
  kind: string;
  plural: string;
  shortNames: string[];
  description: string;
  spec: Schema<unknown>;
  status: Schema<unknown>;
  columns: PrinterColumn[];
}): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${o.plural}.${GROUP}`,
      labels: { 'app.kubernetes.io/name': 'peertunnel', 'app.kubernetes.io/part-of': 'peertunnel' },
    },
    spec: {
      group: GROUP,
      names: {
        kind: o.kind,
        listKind: `${o.kind}List`,
        plural: o.plural,
        singular: o.kind.toLowerCase(),
        shortNames: o.shortNames,
        categories: [CATEGORY],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: o.columns,
          schema: { openAPIV3Schema: rootSchema(o.kind, o.description, o.spec, o.status) },
        },
      ],
    },
  };
}

export const peerNetworkCrd: CustomResourceDefinition = crd({
  kind: 'PeerNetwork',
  plural: 'peernetworks',
  shortNames: ['pnet'],
  description:
    'A private libp2p network (pre-shared swarm key, DHT, bootstrap and relay peers) that the PeerTunnels of this namespace join. Create the same network, with the same key, in every cluster that takes part.',
  spec: peerNetworkSpecSchema,
  status: peerNetworkStatusSchema,
  columns: [
    ...readyColumns,
    {
      name: 'Relay',
      type: 'boolean',
      jsonPath: '.spec.relay.enabled',
      description: 'Whether the operator runs relays for this network.',
    },
    ageColumn,
  ],
});

export const peerTunnelCrd: CustomResourceDefinition = crd({
  kind: 'PeerTunnel',
  plural: 'peertunnels',
  shortNames: ['pt'],
  description:
    'Injects a sidecar into the selected pods that exposes their ports to a PeerNetwork, or forwards local ports to services exposed elsewhere in it.',
  spec: peerTunnelSpecSchema,
  status: peerTunnelStatusSchema,
  columns: [
    ...readyColumns,
    {
      name: 'Network',
      type: 'string',
      jsonPath: '.spec.networkRef.name',
      description: 'The PeerNetwork joined.',
      priority: 1,
    },
    {
      name: 'Pods',
      type: 'string',
      jsonPath: '.status.summary.pods',
      description: 'Ready over selected pods.',
    },
    {
      name: 'Providers',
      type: 'string',
      jsonPath: '.status.summary.providers',
      description: 'The fewest providers any forward sees.',
    },
    {
      name: 'Path',
      type: 'string',
      jsonPath: '.status.summary.path',
      description: 'Direct, relayed or mixed.',
    },
    {
      name: 'Refused',
      type: 'string',
      jsonPath: '.status.summary.refused',
      description: 'Credential refusals the sidecars report (status.trust lists them).',
    },
    ageColumn,
  ],
});

/** The CRDs and the files `crds/generate.ts` writes them to (relative to `crds/`). */
export const CRD_FILES: ReadonlyArray<{ file: string; crd: CustomResourceDefinition }> = [
  { file: 'peertunnel.io_peernetworks.yaml', crd: peerNetworkCrd },
  { file: 'peertunnel.io_peertunnels.yaml', crd: peerTunnelCrd },
];
