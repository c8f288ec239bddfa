/**
 * Patches of libp2p's own objects (transport manager, upgrader, connections, peer store reads):
 * each checks its target first and throws PatchTargetMissingError (./patch.ts).
 */
import type { AbortOptions, Connection, MultiaddrConnection, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { expectShape, PatchTargetMissingError } from './patch.js';

export const DIAL_RESPONDER_PATCH = 'libp2p-dial-responder';
export const CONNECTION_MUXER_PATCH = 'libp2p-connection-muxer';
export const CONNECTION_MACONN_PATCH = 'libp2p-connection-maconn';

/** The one transport manager step patched (structural). */
export interface DialingTransportManager {
  dial(ma: Multiaddr, options?: AbortOptions): Promise<Connection>;
}

/** The one upgrader step patched (structural). */
export interface OutboundUpgrader {
  upgradeOutbound(maConn: MultiaddrConnection, opts: { initiator?: boolean }): Promise<Connection>;
}

/**
 * In a TCP simultaneous open both ends dial, so one of them must run the upgrade as the
 * responder: DCUtR's B passes `initiator: false` to openConnection, but libp2p 3.3's dial queue
 * builds the transport's options from a fixed list and drops it, both ends start noise as the
 * initiator and the handshake fails ("handshake stage 1 validation fail"). The transport
 * manager's dial is where the option can still reach the transport (which hands its options to
 * `upgradeOutbound`), so it is put back there for exactly the addresses `isResponderDial` names.
 * The upgrader honours `initiator: false` for noise and multistream-select, but yamux picks its
 * role (stream ID parity) from the connection's direction ("Both endpoints are clients"); the pnet
 * and noise wrappers copy the direction when they are made, so it is set before the upgrade.
 */
export function restoreResponderDials(
  transportManager: DialingTransportManager,
  upgrader: OutboundUpgrader,
  isResponderDial: (ma: Multiaddr) => boolean,
): void {
  const { dial: stockDial } = expectShape(
    DIAL_RESPONDER_PATCH,
    'libp2p transport manager',
    transportManager,
    {
      dial: 'function',
    },
  );
  const { upgradeOutbound: stockUpgrade } = expectShape(DIAL_RESPONDER_PATCH, 'libp2p upgrader', upgrader, {
    upgradeOutbound: 'function',
  });
  transportManager.dial = (ma, options) => {
    // The upgrader reads `initiator` from these options; the transport manager's type omits it.
    const opts = isResponderDial(ma) ? { ...options, initiator: false } : options;
    return Reflect.apply(stockDial as DialingTransportManager['dial'], transportManager, [
      ma,
      opts,
    ]) as Promise<Connection>;
  };
  upgrader.upgradeOutbound = (maConn, opts) => {
    if (opts.initiator === false) Reflect.set(maConn, 'direction', 'inbound');
    return Reflect.apply(stockUpgrade as OutboundUpgrader['upgradeOutbound'], upgrader, [
      maConn,
      opts,
    ]) as Promise<Connection>;
  };
}

/**
 * The stream muxer of a connection: `muxer` is public on libp2p's Connection class but not part of
 * the interface. Its 'stream' event is the only trace of an inbound stream refused by
 * multistream-select (no handler runs for it).
 */
export function connectionMuxer(connection: Connection): EventTarget {
  const { muxer } = expectShape(CONNECTION_MUXER_PATCH, 'libp2p connection', connection, { muxer: 'object' });
  if (!(muxer instanceof EventTarget))
    throw new PatchTargetMissingError(CONNECTION_MUXER_PATCH, 'connection.muxer is not an EventTarget');
  return muxer;
}

/**
 * The transport connection a connection was upgraded from: `maConn` is public on libp2p's
 * Connection class but not part of the interface. It is what the connection protector was given,
 * so what the protector learnt about it (the swarm key) can be found from the connection.
 */
export function connectionMaConn(connection: Connection): object {
  const { maConn } = expectShape(CONNECTION_MACONN_PATCH, 'libp2p connection', connection, {
    maConn: 'object',
  });
  return maConn as object;
}

/** Streams: counts what `stream.send` is given (an own property over the class method). */
export function countSends(stream: Stream, onBytes: (bytes: number) => void): Stream {
  const { send } = expectShape('circuit-relay-metering', 'libp2p stream', stream, { send: 'function' });
  stream.send = (data) => {
    onBytes(data.byteLength);
    return Reflect.apply(send as Stream['send'], stream, [data]) as boolean;
  };
  return stream;
}
