/**
 * libp2p assembly per role. Private network: TCP + pre-shared key + noise + yamux; identify, ping,
 * kad-dht with the network's protocol string; the relay role adds a circuit relay v2 server
 * without the default per-connection limits (membership is already proven by the PSK).
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
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import type { NodeConfig } from './config.js';
import { ConfigError } from './errors.js';
import { AddressPolicy } from './nat/address-policy.js';

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

export type PeerTunnelServices = {
  identify: ReturnType<ReturnType<typeof identify>>;
  ping: ReturnType<ReturnType<typeof ping>>;
  dht: KadDHT;
  relay?: ReturnType<ReturnType<typeof circuitRelayServer>>;
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
}

export async function createNode({ config, psk, privateKey }: CreateNodeOptions): Promise<PeerTunnelLibp2p> {
  const policy = new AddressPolicy(config.publicRanges);
  const isRelay = config.role === 'relay';
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
            reservations: { applyDefaultLimit: false, maxReservations: 4_096 },
            maxInboundHopStreams: 4_096,
            maxOutboundHopStreams: 4_096,
            maxOutboundStopStreams: 4_096,
          }),
        }
      : {}),
  };
  return createLibp2p({
    privateKey,
    addresses: { listen: config.listen, announce: config.announce },
    transports: [
      tcp({ dialOpts: { noDelay: true }, listenOpts: { noDelay: true } }),
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
  }) as Promise<PeerTunnelLibp2p>;
}
