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
import { identify } from '@libp2p/identify';
import type { Libp2p, PrivateKey } from '@libp2p/interface';
import { type KadDHT, kadDHT, passthroughMapper } from '@libp2p/kad-dht';
import { ping } from '@libp2p/ping';
import { preSharedKey } from '@libp2p/pnet';
import './pnet-xsalsa20-fix.js';
import { createLibp2p } from 'libp2p';
import type { NodeConfig } from './config.js';
import { SERVICE_PROTOCOL_PREFIX } from './discovery.js';
import { ConfigError } from './errors.js';
import { AddressPolicy } from './nat/address-policy.js';
import { connectTimeoutFor, withConnectTimeout } from './nat/connect-timeout.js';
import { type HolePunch, holePunch } from './nat/hole-punch.js';
import { type RelayClient, relayClient } from './nat/relay-client.js';
import { reusePortTcp } from './nat/reuseport-tcp.js';
import { cacheProtocolMerges } from './protocol-merge-cache.js';

/** yamux tuned for a forwarder (design §5). */
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

export type PeerTunnelServices = {
  identify: ReturnType<ReturnType<typeof identify>>;
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

/** Whether this node serves the DHT (design §3: relays and reachable sidecars serve). */
export function dhtServes(config: NodeConfig, policy: AddressPolicy): boolean {
  if (config.dht.server === 'always') return true;
  if (config.dht.server === 'never') return false;
  if (config.role === 'relay') return true;
  return config.announce.some((a) => policy.isPublicMultiaddr(a));
}

export interface CreateNodeOptions {
  config: NodeConfig;
  psk: Uint8Array;
  privateKey: PrivateKey;
  /** Called once when TCP dials cannot come from the listening port (hole punching is then off). */
  onReusePortUnavailable?: (err: Error) => void;
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
  privateKey,
  onReusePortUnavailable,
}: CreateNodeOptions): Promise<PeerTunnelLibp2p> {
  const policy = new AddressPolicy(config.publicRanges);
  const isRelay = config.role === 'relay';
  const relays = config.bootstrap;
  const services = {
    identify: identify(),
    ping: ping(),
    dht: kadDHT({
      protocol: config.dht.protocol,
      clientMode: !dhtServes(config, policy),
      // Pods of one cluster reach each other on private addresses; dialling decides what works.
      peerInfoMapper: passthroughMapper,
      // Records of dead pods must age out quickly; exposers re-provide every 30 s.
      providers: { provideValidity: 300, cleanupInterval: 60 },
      // A private network starts with one peer: do not hold queries until the table fills.
      allowQueryWithZeroPeers: true,
    }),
    ...(isRelay
      ? {
          relay: circuitRelayServer({
            reservations: { applyDefaultLimit: false, maxReservations: RELAY_STREAM_LIMIT },
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
  const node = await createLibp2p({
    privateKey,
    addresses: { listen: config.listen, announce: config.announce },
    transports: [
      // A remote pod's private address gives up its connect quickly, so the circuit or public
      // address after it is tried before the dial runs out of time (nat/connect-timeout.ts).
      withConnectTimeout(
        reusePortTcp({
          dialOpts: { noDelay: true },
          listenOpts: { noDelay: true },
          ...(onReusePortUnavailable === undefined ? {} : { onUnavailable: onReusePortUnavailable }),
        }),
        (ma) => connectTimeoutFor(ma, policy),
      ),
      circuitRelayTransport(),
    ],
    connectionProtector: preSharedKey({ psk }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux(YAMUX_SETTINGS)],
    connectionManager: {
      maxConnections: isRelay ? 4_096 : 1_024,
      // Many nodes behind one NAT (or one test machine) share an address.
      inboundConnectionThreshold: 1_000,
      maxIncomingPendingConnections: 256,
    },
    nodeInfo: { name: 'peertunnel', version: '0.1.0' },
    services,
  });
  // libp2p writes the peer store once per stream; for tunnel streams that is a large share of a
  // new connection's cost (see the module).
  cacheProtocolMerges(node.peerStore, { isCached: (p) => p.startsWith(SERVICE_PROTOCOL_PREFIX) });
  return node as PeerTunnelLibp2p;
}
