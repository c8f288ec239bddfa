/**
 * The node's status from what PeerNode hands over: the /status body, the readiness reasons and the
 * connection counts the metrics read. Pure functions, so what /status says is testable on its own.
 */
import type { Connection } from '@libp2p/interface';
import type {
  ExposeStatus,
  ForwardStatus,
  SidecarStatus,
  SwarmKeyStatus,
} from '../../contracts/sidecar-status.js';
import type { SwarmKeyName } from '../../contracts/swarm-keys.js';
import type { TrustStatus } from '../../contracts/trust.js';
import { VERSION } from '../../contracts/version.js';
import { PATH_KINDS, type PathKind } from '../admin/metrics.js';
import type { NodeConfig } from '../config/config.js';
import type { PortMappingStatus } from '../port-mapping/port-mapper.js';
import type { ExposeHandler } from '../tunnel/expose.js';
import type { ForwardListener } from '../tunnel/forward.js';
import type { PathRegistry } from './connection-paths.js';
import type { NatStatus } from './nat-watch.js';
import type { SwarmKeyRegistry } from './swarm-keys.js';

/** /status: the contract the operator reads, and what only people read. */
export interface PeerNodeStatus extends SidecarStatus {
  role: NodeConfig['role'];
  version: string;
  notReady: string[];
  addresses: string[];
  dht: { protocol: string; mode: string; announced: boolean };
  bootstrap: string[];
  peers: Array<{
    peer: string;
    path: PathKind;
    /** The swarm key of the connection; null when the protector skipped it. */
    swarmKey: SwarmKeyName | null;
    remoteAddr: string;
    direction: string;
    streams: number;
  }>;
  swarmKey: SwarmKeyStatus;
  nat: NatStatus;
  portMapping?: PortMappingStatus;
}

/** Open connections and the peers they reach, by path: the connection gauges. */
export function connectionSnapshot(
  connections: Connection[],
  paths: PathRegistry,
  swarmKeys?: SwarmKeyRegistry,
): { peers: number; byPath: Record<PathKind, number>; bySwarmKey?: Record<SwarmKeyName, number> } {
  const byPath = Object.fromEntries(PATH_KINDS.map((p) => [p, 0])) as Record<PathKind, number>;
  const peers = new Set<string>();
  for (const c of connections) {
    if (c.status !== 'open') continue;
    byPath[paths.pathOf(c)]++;
    peers.add(c.remotePeer.toString());
  }
  return {
    peers: peers.size,
    byPath,
    ...(swarmKeys === undefined ? {} : { bySwarmKey: swarmKeys.count(connections) }),
  };
}

export interface ReadinessParts {
  draining: boolean;
  connections: Connection[];
  forwards: ReadonlyArray<Pick<ForwardListener, 'listening' | 'config'>>;
  exposes: ReadonlyArray<Pick<ExposeHandler, 'targetUp' | 'config'>>;
}

/** Why the node is not ready (/readyz, /status); empty when it is. */
export function notReadyReasons({ draining, connections, forwards, exposes }: ReadinessParts): string[] {
  const reasons: string[] = [];
  if (draining) reasons.push('shutting down: draining open connections');
  if (connections.every((c) => c.status !== 'open')) reasons.push('no connection to any network peer');
  // A draining node closed its listeners on purpose: that is said once above, not per forward.
  for (const f of forwards)
    if (!f.listening && !draining) reasons.push(`forward ${f.config.name} is not listening`);
  for (const e of exposes)
    if (!e.targetUp) reasons.push(`expose ${e.config.name}: its target refuses connections`);
  return reasons;
}

export interface StatusParts {
  peerId: string;
  role: NodeConfig['role'];
  notReady: string[];
  addresses: string[];
  dht: PeerNodeStatus['dht'];
  bootstrap: string[];
  connections: Connection[];
  paths: PathRegistry;
  swarmKeys: SwarmKeyRegistry;
  hasNextSwarmKey: boolean;
  exposes: ExposeStatus[];
  forwards: ForwardStatus[];
  nat: NatStatus;
  portMapping: PortMappingStatus | undefined;
  trust: TrustStatus;
}

export function nodeStatus(parts: StatusParts): PeerNodeStatus {
  const { notReady, paths, swarmKeys } = parts;
  return {
    peerId: parts.peerId,
    role: parts.role,
    version: VERSION,
    ready: notReady.length === 0,
    notReady,
    addresses: parts.addresses,
    dht: parts.dht,
    bootstrap: parts.bootstrap,
    peers: parts.connections
      .filter((c) => c.status === 'open')
      .map((c) => ({
        peer: c.remotePeer.toString(),
        path: paths.pathOf(c),
        swarmKey: swarmKeys.keyOf(c) ?? null,
        remoteAddr: c.remoteAddr.toString(),
        direction: c.direction,
        streams: c.streams.length,
      })),
    swarmKey: { next: parts.hasNextSwarmKey, connections: swarmKeys.count(parts.connections) },
    exposes: parts.exposes,
    forwards: parts.forwards,
    nat: parts.nat,
    portMapping: parts.portMapping,
    trust: parts.trust,
  };
}
