/**
 * The DCUtR message exchange on one /libp2p/dcutr stream, each step bounded by the try's deadline:
 *
 *   B (inbound side of the relayed connection)      A (its dialer)
 *   CONNECT(B's addresses)               ──────►
 *                                        ◄──────   CONNECT(A's addresses)
 *   SYNC                                 ──────►
 *
 * B measures the relay's round trip from its CONNECT to A's; what each side then dials is
 * punch.ts's business.
 */
import type { Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import { DcutrMessageError, HolePunchSetupError } from '../errors.js';
import {
  decodeMessage,
  encodeMessage,
  type HolePunchMessage,
  MAX_MESSAGE_BYTES,
  type MessageType,
} from './protocol.js';

/** Length-prefixed messages on a stream. */
export interface MessageChannel {
  send(message: HolePunchMessage, deadline: AbortSignal): Promise<void>;
  /** The next message's addresses; refuses a message of another type. */
  receive(type: MessageType, deadline: AbortSignal): Promise<Uint8Array[]>;
}

export function messageChannel(stream: Stream): MessageChannel {
  const lp = lpStream(stream, {
    maxDataLength: MAX_MESSAGE_BYTES,
    // At most a message and the start of the next are ever unread: a peer that floods is cut off.
    maxBufferSize: 4 * MAX_MESSAGE_BYTES,
  });
  return {
    send: (message, deadline) => lp.write(encodeMessage(message), { signal: deadline }),
    async receive(type, deadline) {
      const message = decodeMessage((await lp.read({ signal: deadline })).subarray());
      if (message.type !== type) throw new DcutrMessageError(`expected ${type}, got ${message.type}`);
      return message.addrs;
    },
  };
}

/** Which of the peer's addresses to dial (addresses.ts), already bound to the peer. */
export type AcceptAddrs<T> = (addrs: readonly Uint8Array[]) => T[];

/** B: sends CONNECT, reads A's, sends SYNC. Returns A's addresses worth dialling and the RTT. */
export async function exchangeAsInitiator<T>(
  channel: MessageChannel,
  offer: Uint8Array[],
  accept: AcceptAddrs<T>,
  deadline: AbortSignal,
  now: () => number = () => performance.now(),
): Promise<{ addrs: T[]; rttMs: number }> {
  const sent = now();
  await channel.send({ type: 'CONNECT', addrs: offer }, deadline);
  const theirs = await channel.receive('CONNECT', deadline);
  const rttMs = now() - sent;
  const addrs = accept(theirs);
  // Without SYNC, A never dials: the try ends here on both sides.
  if (addrs.length === 0) throw new HolePunchSetupError('the peer offered no address this node can dial');
  await channel.send({ type: 'SYNC', addrs: [] }, deadline);
  return { addrs, rttMs };
}

/** A: reads B's CONNECT, answers with its own, waits for SYNC. Returns B's addresses worth dialling. */
export async function exchangeAsResponder<T>(
  channel: MessageChannel,
  offer: Uint8Array[],
  accept: AcceptAddrs<T>,
  deadline: AbortSignal,
): Promise<T[]> {
  const theirs = await channel.receive('CONNECT', deadline);
  if (theirs.length === 0) throw new DcutrMessageError('CONNECT without addresses');
  const addrs = accept(theirs);
  if (addrs.length === 0) throw new HolePunchSetupError('the peer offered no address this node can dial');
  await channel.send({ type: 'CONNECT', addrs: offer }, deadline);
  await channel.receive('SYNC', deadline);
  return addrs;
}
