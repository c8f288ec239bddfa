/**
 * Every metric family of the node, defined in one place and registered on a registry the caller
 * owns (one per process; tests make their own). Labels are bounded: service names come from the
 * node's own config, never from the network; peer IDs belong in /status, not here.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { CONNECTION_PATHS, type ConnectionPath } from '../../contracts/paths.js';
import { SWARM_KEY_NAMES, type SwarmKeyName } from '../../contracts/swarm-keys.js';

/** Which end of a tunnel a stream belongs to: `forward` (local listener) or `expose` (local target). */
export type Side = 'forward' | 'expose';
/** A connection's path between two nodes: the `path` label, as /status spells it (contracts/paths.ts). */
export type PathKind = ConnectionPath;
export const PATH_KINDS: readonly PathKind[] = CONNECTION_PATHS;

/** Why a stream failed; a fixed set so the label stays bounded. */
export type StreamFailureReason =
  | 'no_provider'
  | 'dial_failed'
  | 'refused'
  | 'target_unreachable'
  | 'reset_by_peer'
  | 'local_error'
  | 'limited_connection'
  | 'provider_busy'
  | 'unauthorized'
  | 'timeout';

export interface SidecarMetrics {
  registry: Registry;
  streamsOpened: Counter<'service' | 'side'>;
  streamsActive: Gauge<'service' | 'side'>;
  streamsFailed: Counter<'service' | 'side' | 'reason'>;
  streamsRefused: Counter<'reason'>;
  inboundRefused: Counter<'reason'>;
  bytes: Counter<'service' | 'side' | 'direction'>;
  streamOpenSeconds: Histogram<'service'>;
  providers: Gauge<'service'>;
  exposeTargetUp: Gauge<'service'>;
  forwardListenerUp: Gauge<'service'>;
  dhtLookups: Counter<'result'>;
  dhtLookupSeconds: Histogram<'result'>;
  dhtProvides: Counter<'result'>;
  dhtRecordsRefused: Counter<'reason'>;
  holePunchAttempts: Counter<'result'>;
  relayReservations: Gauge<'state'>;
  relayReservationsRefused: Counter<'reason'>;
  relayReservationsDropped: Counter<'reason'>;
  relayedBytes: Counter;
  connections: Gauge<'path'>;
  connectionsBySwarmKey: Gauge<'swarm_key'>;
  swarmKeyFallbacks: Counter<'from'>;
  peers: Gauge;
  ready: Gauge;
  reachability: Gauge<'state'>;
  portMappings: Gauge<'protocol' | 'state'>;
  portMappingOperations: Counter<'protocol' | 'operation' | 'result'>;
  buildInfo: Gauge<'version' | 'nodejs' | 'role'>;
  adminRefused: Counter<'reason'>;
  trustRefused: Counter<'side' | 'reason'>;
  trustRevoked: Counter<'side' | 'reason'>;
  trustSyncFailures: Counter<'reason'>;
  credentialExpiry: Gauge;
}

export interface ConnectionSnapshot {
  peers: number;
  byPath: Record<PathKind, number>;
  /** Connections by the swarm key they use; those the protector skipped are in none. */
  bySwarmKey?: Record<SwarmKeyName, number>;
}

export function createSidecarMetrics(
  registry: Registry,
  snapshot: () => ConnectionSnapshot = () => ({
    peers: 0,
    byPath: Object.fromEntries(PATH_KINDS.map((p) => [p, 0])) as Record<PathKind, number>,
  }),
  isReady: () => boolean = () => false,
): SidecarMetrics {
  const registers = [registry];
  const connections = new Gauge({
    name: 'peertunnel_connections',
    help: `Open libp2p connections to network peers, by path (${PATH_KINDS.join(', ')}).`,
    labelNames: ['path'] as const,
    registers,
    collect() {
      const s = snapshot();
      for (const p of PATH_KINDS) this.set({ path: p }, s.byPath[p]);
    },
  });
  const connectionsBySwarmKey = new Gauge({
    name: 'peertunnel_connections_by_swarm_key',
    help: 'Open libp2p connections by the swarm key they use (current, next: the one being rolled in).',
    labelNames: ['swarm_key'] as const,
    registers,
    collect() {
      const s = snapshot();
      for (const k of SWARM_KEY_NAMES) this.set({ swarm_key: k }, s.bySwarmKey?.[k] ?? 0);
    },
  });
  const peers = new Gauge({
    name: 'peertunnel_peers_connected',
    help: 'Network peers with at least one open connection.',
    registers,
    collect() {
      this.set(snapshot().peers);
    },
  });
  const ready = new Gauge({
    name: 'peertunnel_ready',
    help: 'Whether the node is ready (1: connected to a network peer and every forward listening; the same as /readyz), else 0.',
    registers,
    collect() {
      this.set(isReady() ? 1 : 0);
    },
  });
  return {
    registry,
    streamsOpened: new Counter({
      name: 'peertunnel_streams_opened_total',
      help: 'Tunnel streams opened (one per forwarded TCP connection), by service and side.',
      labelNames: ['service', 'side'] as const,
      registers,
    }),
    streamsActive: new Gauge({
      name: 'peertunnel_streams_active',
      help: 'Tunnel streams open now, by service and side.',
      labelNames: ['service', 'side'] as const,
      registers,
    }),
    streamsFailed: new Counter({
      name: 'peertunnel_streams_failed_total',
      help: 'Tunnel streams that failed to open or ended in error, by service, side and reason.',
      labelNames: ['service', 'side', 'reason'] as const,
      registers,
    }),
    streamsRefused: new Counter({
      name: 'peertunnel_streams_refused_total',
      help: 'Inbound streams refused, by reason: not_exposed (a protocol or service this node does not serve), peer_limit (the peer holds as many tunnel streams as one peer may), total_limit (the exposes serve as many as the node may).',
      labelNames: ['reason'] as const,
      registers,
    }),
    inboundRefused: new Counter({
      name: 'peertunnel_inbound_refused_total',
      help: 'Inbound connections refused before proving the swarm key, by reason (rate_per_address, pending_per_address, nonce_timeout; swarm_key: the first bytes decrypt under no key of this node).',
      labelNames: ['reason'] as const,
      registers,
    }),
    bytes: new Counter({
      name: 'peertunnel_stream_bytes_total',
      help: 'Bytes carried by tunnel streams, by service, side and direction (sent to / received from the network).',
      labelNames: ['service', 'side', 'direction'] as const,
      registers,
    }),
    streamOpenSeconds: new Histogram({
      name: 'peertunnel_stream_open_duration_seconds',
      help: 'Time from accepting a local TCP connection to an open stream at a provider.',
      labelNames: ['service'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    providers: new Gauge({
      name: 'peertunnel_forward_providers',
      help: 'Providers known for each forwarded service (0 means the forward has nowhere to go).',
      labelNames: ['service'] as const,
      registers,
    }),
    exposeTargetUp: new Gauge({
      name: 'peertunnel_expose_target_up',
      help: "Whether an exposed service's local target accepted its last connection (1); 0 while it refuses, when the name is not announced and its streams are refused.",
      labelNames: ['service'] as const,
      registers,
    }),
    forwardListenerUp: new Gauge({
      name: 'peertunnel_forward_listener_up',
      help: 'Whether the local listener of a forward is bound (1) or not (0).',
      labelNames: ['service'] as const,
      registers,
    }),
    dhtLookups: new Counter({
      name: 'peertunnel_dht_lookups_total',
      help: 'DHT provider lookups for forwarded services, by result (found, empty, error).',
      labelNames: ['result'] as const,
      registers,
    }),
    dhtLookupSeconds: new Histogram({
      name: 'peertunnel_dht_lookup_duration_seconds',
      help: 'Duration of DHT provider lookups.',
      labelNames: ['result'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    dhtProvides: new Counter({
      name: 'peertunnel_dht_provides_total',
      help: 'DHT provide (announce) operations for exposed services, by result (ok, error).',
      labelNames: ['result'] as const,
      registers,
    }),
    dhtRecordsRefused: new Counter({
      name: 'peertunnel_dht_records_refused_total',
      help: 'DHT provider records this node refused to store, by reason: records_per_peer (the peer holds as many as one peer may), records_total (the node holds as many as it may).',
      labelNames: ['reason'] as const,
      registers,
    }),
    holePunchAttempts: new Counter({
      name: 'peertunnel_holepunch_attempts_total',
      help: 'Hole punch (DCUtR) attempts, by result (success, failure, gave_up).',
      labelNames: ['result'] as const,
      registers,
    }),
    relayReservations: new Gauge({
      name: 'peertunnel_relay_reservations',
      help: 'Circuit relay reservations held by this node (state=active) or served by it (state=serving).',
      labelNames: ['state'] as const,
      registers,
    }),
    relayReservationsRefused: new Counter({
      name: 'peertunnel_relay_reservations_refused_total',
      help: 'Reservation requests this relay refused, by reason: per_address (peers from that IP address hold as many as one address may).',
      labelNames: ['reason'] as const,
      registers,
    }),
    relayReservationsDropped: new Counter({
      name: 'peertunnel_relay_reservations_dropped_total',
      help: 'Reservations this relay dropped before they expired, by reason: disconnected (the peer has no connection left).',
      labelNames: ['reason'] as const,
      registers,
    }),
    relayedBytes: new Counter({
      name: 'peertunnel_relay_relayed_bytes_total',
      help: 'Bytes this relay sent on circuit streams for other peers (every relayed byte counts once); 0 on sidecars.',
      registers,
    }),
    connections,
    connectionsBySwarmKey,
    swarmKeyFallbacks: new Counter({
      name: 'peertunnel_swarm_key_fallbacks_total',
      help: 'Dials the responder refused under the newer swarm key, tried again under the older, by the refused key.',
      labelNames: ['from'] as const,
      registers,
    }),
    peers,
    ready,
    reachability: new Gauge({
      name: 'peertunnel_reachability',
      help: 'This node as others see it: 1 for the current state (public, private, unknown), 0 otherwise.',
      labelNames: ['state'] as const,
      registers,
    }),
    portMappings: new Gauge({
      name: 'peertunnel_port_mappings',
      help: 'Port mapping on the NAT gateway, by protocol (upnp, natpmp): state=active is 1 while a mapping is held, state=failed is 1 when the last attempt failed.',
      labelNames: ['protocol', 'state'] as const,
      registers,
    }),
    portMappingOperations: new Counter({
      name: 'peertunnel_port_mapping_operations_total',
      help: 'Requests to the NAT gateway, by protocol (upnp, natpmp), operation (map, renew, unmap) and result (ok, error).',
      labelNames: ['protocol', 'operation', 'result'] as const,
      registers,
    }),
    buildInfo: new Gauge({
      name: 'peertunnel_build_info',
      help: 'Always 1; labels carry the version, the Node.js version and the role.',
      labelNames: ['version', 'nodejs', 'role'] as const,
      registers,
    }),
    adminRefused: new Counter({
      name: 'peertunnel_admin_refused_total',
      help: 'Admin HTTP connections or requests refused, by reason (connection_limit; status_forbidden: /status off loopback without a token; status_bad_token).',
      labelNames: ['reason'] as const,
      registers,
    }),
    trustRefused: new Counter({
      name: 'peertunnel_trust_refused_total',
      help: 'Peers refused by the trust model, by side (forward: a provider not used for a name; expose: a stream not served; exchange: a credential refused on arrival) and reason (contracts/credential.ts).',
      labelNames: ['side', 'reason'] as const,
      registers,
    }),
    trustRevoked: new Counter({
      name: 'peertunnel_trust_revoked_total',
      help: 'Open tunnel streams ended because their peer is no longer trusted (credential expired or its cluster removed), by side and reason.',
      labelNames: ['side', 'reason'] as const,
      registers,
    }),
    trustSyncFailures: new Counter({
      name: 'peertunnel_trust_sync_failures_total',
      help: "Asks for the network's trusted clusters that failed (the last list stays), by reason (unreachable, refused, bad_answer).",
      labelNames: ['reason'] as const,
      registers,
    }),
    credentialExpiry: new Gauge({
      name: 'peertunnel_credential_expiry_timestamp_seconds',
      help: "When this node's own credential expires (unix seconds); 0 without one.",
      registers,
    }),
  };
}
