/**
 * One side of one hole punch, on a relayed connection:
 *
 * - B (the relayed connection's inbound side) first dials the peer's known public addresses
 *   (`upgradeUnilaterally`: a peer with a reachable or mapped port needs no punch), then makes up
 *   to `tries` tries (`initiate`): exchange, wait half the relay's round trip, dial as the TCP
 *   simultaneous-open responder.
 * - A answers B's CONNECT on the stream B opened (`respond`) and dials at SYNC.
 *
 * Neither closes the relayed connection: its tunnel streams decide when (relay-drain.ts).
 * Everything outside the protocol (streams, dials, clocks) comes in through `PunchSteps`.
 */
import type { Connection, Logger, PeerId, Stream } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { isRelayedConnection } from '../../../contracts/relayed.js';
import { exchangeAsInitiator, exchangeAsResponder, type MessageChannel } from './exchange.js';

export interface PunchSteps {
  /** Tries per round (B). */
  tries: number;
  /** One try's deadline, ms: the exchange and the dial together. */
  timeoutMs: number;
  log: Logger;
  /** This node's CONNECT addresses. */
  offer(): Uint8Array[];
  /** Which of the peer's CONNECT addresses to dial. */
  accept(addrs: readonly Uint8Array[], peer: PeerId): Multiaddr[];
  openStream(relayed: Connection, deadline: AbortSignal): Promise<Stream>;
  channel(stream: Stream): MessageChannel;
  /** The punch dial; `responder`: this side runs the upgrade as the responder (B). */
  dial(
    peer: PeerId,
    addrs: Multiaddr[],
    options: { deadline: AbortSignal; responder: boolean },
  ): Promise<Connection>;
  /** Whether another try is pointless: the relayed connection closed, the node stops, or it is direct now. */
  shouldStop(relayed: Connection): boolean;
  sleep(ms: number): Promise<void>;
  /** The peer's known addresses worth a direct dial. */
  unilateralTargets(peer: PeerId): Promise<Multiaddr[]>;
  dialDirect(addrs: Multiaddr[], deadline: AbortSignal): Promise<Connection>;
}

export interface InitiateResult {
  connection?: Connection;
  tries: number;
  /** The last try's error, when no try succeeded. */
  error?: unknown;
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/** Closes our end of a finished exchange; a stream that cannot close gracefully is reset. */
async function closeStream(stream: Stream, deadline: AbortSignal): Promise<void> {
  try {
    await stream.close({ signal: deadline });
  } catch (err) {
    stream.abort(asError(err));
  }
}

/** B, before any punch: a direct connection to an address the peer announced, if one answers. */
export async function upgradeUnilaterally(
  relayed: Connection,
  steps: PunchSteps,
): Promise<Connection | undefined> {
  const peer = relayed.remotePeer;
  let addrs: Multiaddr[];
  try {
    addrs = await steps.unilateralTargets(peer);
  } catch {
    return undefined;
  }
  if (addrs.length === 0) return undefined;
  try {
    const connection = await steps.dialDirect(addrs, AbortSignal.timeout(steps.timeoutMs));
    return isRelayedConnection(connection) ? undefined : connection;
  } catch (err) {
    steps.log('direct upgrade to %p failed - %e', peer, err);
    return undefined;
  }
}

/** B: up to `tries` tries on new streams; the first direct connection ends the round. */
export async function initiate(relayed: Connection, steps: PunchSteps): Promise<InitiateResult> {
  const peer = relayed.remotePeer;
  let error: unknown;
  let tries = 0;
  while (tries < steps.tries && !steps.shouldStop(relayed)) {
    tries++;
    const deadline = AbortSignal.timeout(steps.timeoutMs);
    let stream: Stream | undefined;
    try {
      stream = await steps.openStream(relayed, deadline);
      const { addrs, rttMs } = await exchangeAsInitiator(
        steps.channel(stream),
        steps.offer(),
        (theirs) => steps.accept(theirs, peer),
        deadline,
      );
      // A dials as soon as SYNC reaches it, half a round trip from now: both SYNs cross then.
      await steps.sleep(rttMs / 2);
      const connection = await steps.dial(peer, addrs, { deadline, responder: true });
      await closeStream(stream, deadline);
      return { connection, tries };
    } catch (err) {
      error = err;
      steps.log('hole punch try %d of %d to %p failed - %e', tries, steps.tries, peer, err);
      stream?.abort(asError(err));
    }
  }
  return { tries, error };
}

/** A: answers B's exchange on `stream` and dials at SYNC; throws when the exchange or dial fails. */
export async function respond(stream: Stream, relayed: Connection, steps: PunchSteps): Promise<Connection> {
  const peer = relayed.remotePeer;
  const deadline = AbortSignal.timeout(steps.timeoutMs);
  const addrs = await exchangeAsResponder(
    steps.channel(stream),
    steps.offer(),
    (theirs) => steps.accept(theirs, peer),
    deadline,
  );
  const connection = await steps.dial(peer, addrs, { deadline, responder: false });
  await closeStream(stream, deadline);
  return connection;
}
