/**
 * @libp2p/circuit-relay-v2 internals read by this project: the relay server's private hop handler
 * (re-registered around a byte meter) and the relay transport's private reservation store (the
 * relay client drives reservations through it). Checked first: PatchTargetMissingError.
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { expectShape } from './patch.js';

export const RELAY_HOP_PATCH = 'circuit-relay-hop-handler';
export const RESERVATION_STORE_PATCH = 'circuit-relay-reservation-store';

/** The relay server's `onHop(stream, connection)`, bound to it. */
export function relayHopHandler(relay: unknown): (stream: Stream, connection: Connection) => Promise<void> {
  const { onHop } = expectShape(RELAY_HOP_PATCH, 'circuit relay server', relay, { onHop: 'function' });
  return (stream, connection) =>
    Reflect.apply(onHop as (s: Stream, c: Connection) => Promise<void>, relay, [
      stream,
      connection,
    ]) as Promise<void>;
}

/** The reservation store's members the relay client uses. */
export interface ReservationStore {
  addRelay(peerId: PeerId, type: 'configured'): Promise<unknown>;
  hasReservation(peerId: PeerId): boolean;
  addEventListener(type: string, listener: (evt: Event) => void): void;
  removeEventListener(type: string, listener: (evt: Event) => void): void;
}

export const RESERVATION_STORE_MEMBERS = {
  addRelay: 'function',
  hasReservation: 'function',
  addEventListener: 'function',
  removeEventListener: 'function',
} as const;

/** The circuit relay transport's `reservationStore`. */
export function reservationStore(transport: unknown): ReservationStore {
  const { reservationStore: store } = expectShape(
    RESERVATION_STORE_PATCH,
    'circuit relay transport',
    transport,
    {
      reservationStore: 'object',
    },
  );
  expectShape(RESERVATION_STORE_PATCH, 'circuit relay reservation store', store, RESERVATION_STORE_MEMBERS);
  return store as ReservationStore;
}
