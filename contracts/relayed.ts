/**
 * Whether a libp2p connection goes through a relay: the one rule for every part that asks (path
 * reporting, hole punching, port mapping, observed addresses, relay reservations).
 *
 * Two signs, either enough: a circuit address (`/p2p-circuit`), or `limits` (a circuit relay v2
 * connection with a data or time limit). Our own relays run without limits, so an unlimited relayed
 * connection is only known by its address; `limits` alone never tells relayed from direct.
 */

/** The parts of a connection the rule reads; structural, so this module loads no libp2p. */
export interface ConnectionLike {
  readonly limits?: unknown;
  readonly remoteAddr: { toString(): string };
}

/** A multiaddr (or its text) that goes through a relay. */
export const isCircuitAddress = (addr: { toString(): string }): boolean =>
  addr.toString().includes('/p2p-circuit');

export const isRelayedConnection = (c: ConnectionLike): boolean =>
  c.limits !== undefined || isCircuitAddress(c.remoteAddr);
