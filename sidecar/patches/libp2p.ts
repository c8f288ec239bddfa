/**
 * Patches of libp2p's own objects (transport manager, upgrader, connections, peer store reads):
 * each checks its target first and throws PatchTargetMissingError (./patch.ts).
 */
import type { DCUtRServiceComponents } from '@libp2p/dcutr';
import type { Connection, MultiaddrConnection, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { expectShape, PatchTargetMissingError } from './patch.js';

export const DIAL_RESPONDER_PATCH = 'libp2p-dial-responder';
export const DEFER_CLOSE_PATCH = 'libp2p-connection-deferred-close';
export const CONNECTION_MUXER_PATCH = 'libp2p-connection-muxer';

export type DialingTransportManager = Pick<DCUtRServiceComponents['transportManager'], 'dial'>;

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
 * Replaces `connection.close` with `deferred` (an own property shadowing the class method) until
 * the returned function puts the stock one back. DCUtR closes the relayed connection right after
 * an upgrade, and yamux's close half-closes every stream on it, so a tunnel stream would lose the
 * rest of its data: the hole puncher closes it later itself.
 */
export function deferConnectionClose(
  connection: Connection,
  deferred: (realClose: () => Promise<void>) => Promise<void>,
): () => void {
  const { close } = expectShape(DEFER_CLOSE_PATCH, 'libp2p connection', connection, { close: 'function' });
  const realClose = (): Promise<void> =>
    Reflect.apply(close as Connection['close'], connection, []) as Promise<void>;
  Reflect.set(connection, 'close', () => deferred(realClose));
  return () => {
    Reflect.deleteProperty(connection, 'close');
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

/** Streams: counts what `stream.send` is given (an own property over the class method). */
export function countSends(stream: Stream, onBytes: (bytes: number) => void): Stream {
  const { send } = expectShape('circuit-relay-metering', 'libp2p stream', stream, { send: 'function' });
  stream.send = (data) => {
    onBytes(data.byteLength);
    return Reflect.apply(send as Stream['send'], stream, [data]) as boolean;
  };
  return stream;
}
