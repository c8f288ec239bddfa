/**
 * Port mapping on the NAT gateway (UPnP-IGD and NAT-PMP): map the node's TCP listening port, renew
 * the lease, announce `/ip4/<external>/tcp/<port>`, mark connections that come in through it, and
 * remove it on stop. `@libp2p/upnp-nat` speaks UPnP only and rejects the lab's (documentation-range)
 * external addresses as a double NAT, so this is our own service on the same port mapper library.
 *
 * Style of js-libp2p components: `portMapper(init)(components)`; the class is in service.ts,
 * the pure decisions in plan.ts, the protocols in clients.ts, the default route in gateway.ts.
 */
import type { Connection, Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Counter, Gauge } from 'prom-client';
import type { PathKind } from '../admin/metrics.js';
import type { Logger } from '../node/logger.js';
import type { MappingClients, PortMappingProtocol } from './clients.js';
import { DefaultPortMapper } from './service.js';

export type { PortMappingProtocol } from './clients.js';

export interface PortMapperInit {
  /** Try UPnP-IGD (first, when both are on). @default false */
  upnp?: boolean;
  /** Try NAT-PMP. @default false */
  natPmp?: boolean;
  /** The gateway: NAT-PMP talks to it; UPnP takes only an IGD on it. @default the default route's gateway (NAT-PMP), any IGD that answers (UPnP) */
  gateway?: string;
  /** CIDRs that count as public (config `publicRanges`); empty means the internet's. @default [] */
  publicRanges?: readonly string[];
  /** Lease asked for, in seconds; renewed at half-life. @default 600 */
  leaseSeconds?: number;
  /** SSDP search for a UPnP gateway. @default 5000 */
  discoveryTimeoutMs?: number;
  /** One request to the gateway. @default 8000 */
  requestTimeoutMs?: number;
  /** Removing the mapping on stop. @default 3000 */
  unmapTimeoutMs?: number;
}

/** What the service needs of libp2p, narrowed to the calls it makes. */
export interface PortMappingAddressManager {
  getAddressesWithMetadata(): ReadonlyArray<{ multiaddr: Multiaddr; type: string }>;
  addPublicAddressMapping(
    internalIp: string,
    internalPort: number,
    externalIp: string,
    externalPort?: number,
    protocol?: 'tcp' | 'udp',
  ): void;
  removePublicAddressMapping(
    internalIp: string,
    internalPort: number,
    externalIp: string,
    externalPort?: number,
    protocol?: 'tcp' | 'udp',
  ): void;
  confirmObservedAddr(addr: Multiaddr, options?: { type?: 'ip-mapping'; ttl?: number }): void;
}

export interface PortMappingMetrics {
  /** 1 while a mapping is held (state=active) or after the last attempt failed (state=failed). */
  portMappings: Gauge<'protocol' | 'state'>;
  portMappingOperations: Counter<'protocol' | 'operation' | 'result'>;
}

export interface PortMapperComponents {
  addressManager: PortMappingAddressManager;
  /** Calls `listener` for every new connection; returns the unsubscribe. */
  onConnection(listener: (connection: Connection) => void): () => void;
  paths: { mark(connection: Connection, path: PathKind): void; pathOf(connection: Connection): PathKind };
  logger: Logger;
  metrics?: PortMappingMetrics;
  /** The protocol clients. @default the @achingbrain/nat-port-mapper ones */
  clients?: MappingClients;
  /** The local address that faces a gateway. @default the subnet match, else a route lookup */
  localAddressFor?: (gateway: string) => Promise<string | undefined>;
  /** The IPv4 default gateway. @default /proc/net/route */
  defaultGateway?: () => Promise<string | undefined>;
  now?: () => number;
}

export type PortMappingState = 'disabled' | 'searching' | 'mapped' | 'failed' | 'stopped';

/** For /status. Times are ISO strings. */
export interface PortMappingStatus {
  /** Protocols turned on, in the order tried. */
  enabled: PortMappingProtocol[];
  state: PortMappingState;
  protocol?: PortMappingProtocol;
  gateway?: string;
  /** `ip:port` the gateway forwards to. */
  internal?: string;
  /** The announced address, `/ip4/<external ip>/tcp/<external port>`. */
  external?: string;
  expires?: string;
  /** Successful renewals of the current mapping. */
  renewals: number;
  /** The last failure, when state is failed (or a renewal is failing). */
  error?: string;
}

export interface PortMapper {
  /** Returns at once; gateway discovery and mapping run in the background. */
  start(): Promise<void>;
  /** Removes the mapping from the gateway (bounded wait) and withdraws the address. */
  stop(): Promise<void>;
  status(): PortMappingStatus;
}

export function portMapper(init: PortMapperInit): (components: PortMapperComponents) => PortMapper {
  return (components) => new DefaultPortMapper(components, init);
}

/** libp2p 3 keeps its components on the node object but not in the public `Libp2p` type. */
export class AddressManagerUnavailableError extends Error {
  constructor() {
    super('libp2p node has no components.addressManager (libp2p 3.x expected): cannot announce mapped ports');
    this.name = 'AddressManagerUnavailableError';
  }
}

function isAddressManager(value: unknown): value is PortMappingAddressManager {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return [
    'getAddressesWithMetadata',
    'addPublicAddressMapping',
    'removePublicAddressMapping',
    'confirmObservedAddr',
  ].every((name) => typeof v[name] === 'function');
}

/**
 * The address manager of a running libp2p node: what @libp2p/upnp-nat uses to announce its
 * mappings (it gets it as a service component; we run outside libp2p's services, so we reach it
 * on the node, checked at runtime).
 */
export function addressManagerOf(libp2p: Libp2p): PortMappingAddressManager {
  const components: unknown = 'components' in libp2p ? libp2p.components : undefined;
  let addressManager: unknown;
  try {
    // A Proxy that throws for services it lacks and answers `in` about itself, so: a plain get.
    addressManager =
      typeof components === 'object' && components !== null
        ? (components as Record<string, unknown>).addressManager
        : undefined;
  } catch {
    addressManager = undefined;
  }
  if (!isAddressManager(addressManager)) throw new AddressManagerUnavailableError();
  return addressManager;
}

const NO_ADDRESS_MANAGER: PortMappingAddressManager = {
  getAddressesWithMetadata: () => [],
  addPublicAddressMapping: () => undefined,
  removePublicAddressMapping: () => undefined,
  confirmObservedAddr: () => undefined,
};

export interface NodePortMappingParts {
  paths: PortMapperComponents['paths'];
  logger: Logger;
  metrics?: PortMappingMetrics;
}

/** The port mapper of a started libp2p node, configured from the node config's `nat` and `publicRanges`. */
export function createNodePortMapper(
  libp2p: Libp2p,
  config: {
    nat: { upnp: boolean; natPmp: boolean; gateway?: string | undefined };
    publicRanges: readonly string[];
  },
  parts: NodePortMappingParts,
): PortMapper {
  // A node with port mapping off never touches libp2p internals.
  const enabled = config.nat.upnp || config.nat.natPmp;
  return portMapper({
    upnp: config.nat.upnp,
    natPmp: config.nat.natPmp,
    gateway: config.nat.gateway,
    publicRanges: config.publicRanges,
  })({
    addressManager: enabled ? addressManagerOf(libp2p) : NO_ADDRESS_MANAGER,
    onConnection: (listener) => {
      const handler = (evt: CustomEvent<Connection>) => listener(evt.detail);
      libp2p.addEventListener('connection:open', handler);
      return () => libp2p.removeEventListener('connection:open', handler);
    },
    paths: parts.paths,
    logger: parts.logger,
    metrics: parts.metrics,
  });
}
