/**
 * Bytes a relay carries for others, counted on its own streams: every relayed byte leaves the
 * relay exactly once, on the hop stream to the dialing peer or on the stop stream to the listening
 * peer. This is how an operator (and the NAT lab) tells that traffic went direct: the counter
 * stands still while a hole-punched tunnel moves gigabytes.
 *
 * Not done with `libp2p.use()` middleware: libp2p 3.3 appends the protocol handler to the stored
 * middleware array on every inbound stream (connection.js `middleware.push`), so the relay's hop
 * handler would run once more for each stream it has ever seen. Instead the hop handler is
 * registered again around the relay service's own, and the relay's connections get a `newStream`
 * that counts the stop streams it opens.
 */
import { RELAY_V2_HOP_CODEC, RELAY_V2_STOP_CODEC } from '@libp2p/circuit-relay-v2';
import type { Connection, Libp2p, StreamHandler } from '@libp2p/interface';
import { relayHopHandler } from '../patches/circuit-relay.js';
import { countSends } from '../patches/libp2p.js';

/** What the relay server was started with (node.ts): the re-registered handler keeps them. */
export interface RelayMeterLimits {
  maxInboundHopStreams: number;
  maxOutboundHopStreams: number;
}

/** Counts what the relay sends on circuit streams; call once per node, after it started, on relays. */
export async function meterRelayedBytes(
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'addEventListener' | 'getConnections'> & {
    services: { relay?: unknown };
  },
  limits: RelayMeterLimits,
  onBytes: (bytes: number) => void,
): Promise<void> {
  const onHop = relayHopHandler(libp2p.services.relay);
  const handler: StreamHandler = (stream, connection) => onHop(countSends(stream, onBytes), connection);
  await libp2p.unhandle(RELAY_V2_HOP_CODEC);
  await libp2p.handle(RELAY_V2_HOP_CODEC, handler, {
    maxInboundStreams: limits.maxInboundHopStreams,
    maxOutboundStreams: limits.maxOutboundHopStreams,
    runOnLimitedConnection: true,
  });
  const wrap = (connection: Connection): void => {
    const newStream = connection.newStream.bind(connection);
    connection.newStream = async (protocols, options) => {
      const stream = await newStream(protocols, options);
      return stream.protocol === RELAY_V2_STOP_CODEC ? countSends(stream, onBytes) : stream;
    };
  };
  for (const c of libp2p.getConnections()) wrap(c);
  libp2p.addEventListener('connection:open', (evt) => wrap(evt.detail));
}
