/**
 * libp2p assembly per role. Private network: TCP + pre-shared key + noise + yamux; identify, ping,
 * kad-dht with the network's protocol string; the relay role adds a circuit relay v2 server
 * without the default per-connection limits (membership is already proven by the PSK). TCP dials
 * come from the listening port (reusePortTcp), which is what makes hole punching possible; sidecars
 * hold reservations on the network's relays (relayClient) and upgrade relayed connections by DCUtR
 * (holePunch).
 */

import { readFile } from 'node:fs/promises';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { generateKeyPair, privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { identify, identifyPush } from '@libp2p/identify';
import type { Libp2p, PrivateKey } from '@libp2p/interface';
import { type KadDHT, kadDHT } from '@libp2p/kad-dht';
import { ping } from '@libp2p/ping';
import { createLibp2p } from 'libp2p';
import { VERSION } from '../../contracts/version.js';
import type { NodeConfig } from '../config/config.js';
import { nativeNoiseCrypto } from '../crypto/noise-crypto.js';
import { withSwarmKeyFallback } from '../crypto/pnet-dial.js';
import { PnetProtector } from '../crypto/pnet-protector.js';
import { BoundedDatastore, dhtAddressFilter } from '../discovery/dht-limits.js';
import { SERVICE_PROTOCOL_PREFIX } from '../discovery/service-directory.js';
import { AddressPolicy } from '../nat/address-policy.js';
import { connectTimeoutFor, withConnectTimeout } from '../nat/connect-timeout.js';
import { type HolePunch, holePunch } from '../nat/hole-punch.js';
import { type RelayClient, relayClient } from '../nat/relay-client.js';
import type { RelayGuard } from '../nat/relay-guard.js';
import { reusePortTcp } from '../nat/reuseport-tcp.js';
import { cacheProtocolMerges } from '../patches/peer-store-merge.js';
import { applyDecoderFix, applyYamuxWindowRule } from '../patches/wire.js';
import { ConfigError } from './errors.js';
import type { InboundGuard } from './inbound-guard.js';
import { libp2pLogger } from './libp2p-logger.js';
import type { SwarmKeyRegistry } from './swarm-keys.js';

/** yamux tuned for a forwarder (docs/architecture.md, Protocols). */
export const YAMUX_SETTINGS = {
  // More than 10 streams on a brand-new connection otherwise leave it unusable.
  maxEarlyStreams: 2_048,
  maxInboundStreams: 100_000,
  maxOutboundStreams: 100_000,
  streamOptions: {
    initialStreamWindowSize: 256 * 1024,
    // pause() is the only read backpressure and yamux grows the window while unpaused: keep the
    // window within the read buffer so a paused stream cannot overflow and reset.
    maxStreamWindowSize: 4 * 1024 * 1024,
    maxReadBufferLength: 8 * 1024 * 1024,
    // Tunnelled TCP connections (database pools) may sit idle for hours.
    inactivityTimeout: 0,
  },
} as const;

/** Hop/stop streams and reservations a relay serves at once (its members are trusted by PSK). */
export const RELAY_STREAM_LIMIT = 4_096;

/**
 * How long a relay keeps a reservation without a refresh (libp2p's default is 2 h); clients
 * refresh 5 min before it ends, and one that disconnects loses it at once (RelayGuard).
 */
export const RELAY_RESERVATION_TTL_MS = 10 * 60_000;

export type PeerTunnelServices = {
  identify: ReturnType<ReturnType<typeof identify>>;
  identifyPush: ReturnType<ReturnType<typeof identifyPush>>;
  ping: ReturnType<ReturnType<typeof ping>>;
  dht: KadDHT;
  relay?: ReturnType<ReturnType<typeof circuitRelayServer>>;
  holePunch?: HolePunch;
  relayClient?: RelayClient;
};

export type PeerTunnelLibp2p = Libp2p<PeerTunnelServices>;

export async function loadIdentity(config: NodeConfig): Promise<PrivateKey> {
  if (config.identity === undefined) return generateKeyPair('Ed25519');
  let bytes: Uint8Array;
  try {
    bytes = await readFile(config.identity.file);
  } catch (err) {
    throw new ConfigError(
      'identity.file',
      `cannot read ${config.identity.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  try {
    return privateKeyFromProtobuf(bytes);
  } catch {
    throw new ConfigError(
      'identity.file',
      `${config.identity.file} is not a protobuf-encoded libp2p private key`,
    );
  }
}

/** Whether this node serves the DHT: relays and nodes that announce a public address do; a NATed server would only be an unreachable one. */
export function dhtServes(config: NodeConfig, policy: AddressPolicy): boolean {
  if (config.dht.server === 'always') return true;
  if (config.dht.server === 'never') return false;
  if (config.role === 'relay') return true;
  return config.announce.some((a) => policy.isPublicMultiaddr(a));
}

export interface CreateNodeOptions {
  config: NodeConfig;
  psk: Uint8Array;
  /** The next key of a rollover: accepted beside `psk`, dialled with first. */
  nextPsk?: Uint8Array | undefined;
  /** Told each connection's key and each dial that fell back to the older key. */
  swarmKeys?: SwarmKeyRegistry;
  privateKey: PrivateKey;
  /** Pre-authentication bounds per source address (the connection gater); none when absent. */
  inbound?: InboundGuard;
  /** Called once when TCP dials cannot come from the listening port (hole punching is then off). */
  onReusePortUnavailable?: (err: Error) => void;
  /** On a relay: limits reservations per source address and drops those of disconnected peers. */
  relayGuard?: RelayGuard;
  /** Where the DHT keeps records (bounded per peer); a new one by default. */
  datastore?: BoundedDatastore;
}

/** Peer IDs of the configured bootstrap/relay peers. */
export function bootstrapPeerIds(config: NodeConfig): string[] {
  return config.bootstrap.flatMap((a) => {
    const id = /\/p2p\/([^/]+)$/.exec(a)?.[1];
    return id === undefined ? [] : [id];
  });
}

export async function createNode({
  config,
  psk,
  nextPsk,
  swarmKeys,
  privateKey,
  inbound,
  onReusePortUnavailable,
  relayGuard,
  datastore = new BoundedDatastore(),
}: CreateNodeOptions): Promise<PeerTunnelLibp2p> {
  // Process-wide library fixes of the data path (sidecar/patches/inventory.ts); they throw
  // PatchTargetMissingError when their target changed, which fails the start.
  applyYamuxWindowRule();
  applyDecoderFix();
  const policy = new AddressPolicy(config.publicRanges);
  const isRelay = config.role === 'relay';
  const relays = config.bootstrap;
  const services = {
    identify: identify(),
    // Tells connected peers at once when an expose stops (its target refuses) or resumes.
    identifyPush: identifyPush(),
    ping: ping(),
    dht: kadDHT({
      protocol: config.dht.protocol,
      clientMode: !dhtServes(config, policy),
      // Pods of one cluster reach each other on private addresses, so those stay; what no peer
      // can be (link-local, multicast, another pod's loopback) is never taken from a record.
      peerInfoMapper: dhtAddressFilter(
        policy,
        config.listen.some((a) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/')),
      ),
      // Records of dead pods must age out quickly; exposers provide again every 30 s themselves,
      // so kad-dht never re-provides (threshold 0): a name taken out of service stays out.
      reprovide: { validity: 5 * 60_000, interval: 60_000, threshold: 0 },
      // Per connection; DHT RPCs are short.
      maxInboundStreams: 16,
      maxOutboundStreams: 32,
      // A private network starts with one peer: do not hold queries until the table fills.
      allowQueryWithZeroPeers: true,
    }),
    ...(isRelay
      ? {
          relay: circuitRelayServer({
            reservations: {
              applyDefaultLimit: false,
              maxReservations: RELAY_STREAM_LIMIT,
              reservationTtl: RELAY_RESERVATION_TTL_MS,
            },
            maxInboundHopStreams: RELAY_STREAM_LIMIT,
            maxOutboundHopStreams: RELAY_STREAM_LIMIT,
            maxOutboundStopStreams: RELAY_STREAM_LIMIT,
          }),
        }
      : {}),
    ...(!isRelay && config.nat.holePunch
      ? { holePunch: holePunch({ policy, trustedObservers: bootstrapPeerIds(config) }) }
      : {}),
    ...(!isRelay && relays.length > 0 && config.nat.relayReservations > 0
      ? { relayClient: relayClient({ relays, maxReservations: config.nat.relayReservations }) }
      : {}),
  };
  const protector = new PnetProtector({
    psk,
    nextPsk,
    nonceTimeoutMs: config.inbound.nonceTimeoutMs,
    onNonceTimeout: (addr, direction) => {
      if (direction === 'inbound') inbound?.nonceTimedOut(addr);
    },
    onKey: (connection, key) => swarmKeys?.record(connection, key),
    onMismatch: (addr) => inbound?.swarmKeyMismatch(addr),
  });
  // Every dial (TCP, relayed) tries the keys newest first (docs/architecture.md, Swarm-key rollover).
  const keyOrder = () => protector.keys.map((k) => k.name);
  const onFallback = (from: 'current' | 'next') => swarmKeys?.fellBack(from);
  const node = await createLibp2p({
    privateKey,
    logger: libp2pLogger(),
    datastore,
    addresses: { listen: config.listen, announce: config.announce },
    transports: [
      // A remote pod's private address gives up its connect quickly, so the circuit or public
      // address after it is tried before the dial runs out of time (nat/connect-timeout.ts).
      withSwarmKeyFallback(
        withConnectTimeout(
          reusePortTcp({
            dialOpts: { noDelay: true },
            listenOpts: { noDelay: true },
            ...(onReusePortUnavailable === undefined ? {} : { onUnavailable: onReusePortUnavailable }),
          }),
          (ma) => connectTimeoutFor(ma, policy),
        ),
        keyOrder,
        onFallback,
      ),
      withSwarmKeyFallback(circuitRelayTransport(), keyOrder, onFallback),
    ],
    connectionProtector: () => protector,
    // One gater: the inbound guard's per-address bounds, and on a relay the reservation bounds.
    connectionGater: {
      ...inbound?.gater,
      ...(isRelay && relayGuard !== undefined
        ? { denyInboundRelayReservation: (peer) => relayGuard.denyInboundRelayReservation(peer) }
        : {}),
    },
    connectionEncrypters: [noise({ crypto: nativeNoiseCrypto })],
    streamMuxers: [yamux(YAMUX_SETTINGS)],
    connectionManager: {
      maxConnections: isRelay ? 4_096 : 1_024,
      // Many nodes behind one NAT (or one test machine) share an address; the per-address bounds
      // that count their refusals are the inbound guard's (inbound-guard.ts), this is a backstop.
      inboundConnectionThreshold: 1_000,
      maxIncomingPendingConnections: 256,
    },
    nodeInfo: { name: 'peertunnel', version: VERSION },
    services,
  });
  const relay = (node as PeerTunnelLibp2p).services.relay;
  if (relay !== undefined) relayGuard?.attach(node, relay.reservations);
  // libp2p writes the peer store once per stream; for tunnel streams that is a large share of a
  // new connection's cost (see the module).
  cacheProtocolMerges(node.peerStore, { isCached: (p) => p.startsWith(SERVICE_PROTOCOL_PREFIX) });
  return node as PeerTunnelLibp2p;
}
