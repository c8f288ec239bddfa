/**
 * Bounds what one member can take of a relay's reservations. The circuit relay server keeps one
 * reservation per peer ID, up to a total, for its TTL even after the peer disconnected; throw-away
 * identities from one host could fill it. This guard adds, through libp2p's public hooks only:
 * - a limit per source IP address (the connection gater's denyInboundRelayReservation, which the
 *   server asks before each reservation): a refresh by a peer that holds one is always allowed;
 * - dropping a reservation as soon as its peer has no connection left (the reservation's own
 *   signal is cleared first, so its timer cannot later delete a newer reservation of that peer).
 */
import type { Connection, Libp2p, PeerId } from '@libp2p/interface';

/** A reservation as the relay server exposes it (`reservations`); structural, no internals. */
export interface GuardedReservation {
  addr: { toString(): string };
  signal: { clear(): void };
}

/** The relay server's public `reservations` map, as far as the guard uses it. */
export interface ReservationMap {
  has(peer: PeerId): boolean;
  get(peer: PeerId): GuardedReservation | undefined;
  delete(peer: PeerId): void;
  values(): Iterable<GuardedReservation>;
}

export type RelayGuardEvent =
  | { type: 'refused'; reason: 'per_address'; peer: string; ip: string }
  | { type: 'dropped'; reason: 'disconnected'; peer: string };

/** The IP of a multiaddr string's first component, or the whole string when it has none. */
function ipOf(addr: string): string {
  return /^\/ip[46]\/([^/]+)/.exec(addr)?.[1] ?? addr;
}

export class RelayGuard {
  private node?: Pick<Libp2p, 'getConnections' | 'addEventListener' | 'removeEventListener'>;
  private reservations?: ReservationMap;
  private readonly listeners = new Set<(e: RelayGuardEvent) => void>();

  constructor(private readonly perAddress: number) {
    this.onClose = this.onClose.bind(this);
  }

  subscribe(listener: (e: RelayGuardEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(e: RelayGuardEvent): void {
    for (const l of this.listeners) l(e);
  }

  /** The gater hook: true denies. Until attached (no relay yet), nothing is denied. */
  denyInboundRelayReservation(peer: PeerId): boolean {
    const reservations = this.reservations;
    if (reservations === undefined || this.node === undefined || reservations.has(peer)) return false;
    const conn = this.node.getConnections(peer).find((c) => c.status === 'open');
    if (conn === undefined) return false;
    const ip = ipOf(conn.remoteAddr.toString());
    let held = 0;
    for (const r of reservations.values()) if (ipOf(r.addr.toString()) === ip) held++;
    if (held < this.perAddress) return false;
    this.emit({ type: 'refused', reason: 'per_address', peer: peer.toString(), ip });
    return true;
  }

  attach(
    node: Pick<Libp2p, 'getConnections' | 'addEventListener' | 'removeEventListener'>,
    reservations: ReservationMap,
  ): void {
    this.node = node;
    this.reservations = reservations;
    node.addEventListener('connection:close', this.onClose);
  }

  detach(): void {
    this.node?.removeEventListener('connection:close', this.onClose);
  }

  private onClose(evt: CustomEvent<Connection>): void {
    const peer = evt.detail.remotePeer;
    const reservation = this.reservations?.get(peer);
    if (reservation === undefined) return;
    if (this.node?.getConnections(peer).some((c) => c.status === 'open') === true) return;
    reservation.signal.clear();
    this.reservations?.delete(peer);
    this.emit({ type: 'dropped', reason: 'disconnected', peer: peer.toString() });
  }
}
