/**
 * Which addresses a hole punch trades and dials.
 *
 * Offered: this node's own addresses plus the public side of its NAT as peers observe it
 * (observed-addrs.ts), which the address manager never holds. Dialled: only what the
 * AddressPolicy calls public (documentation and lab ranges may be, per network) over TCP, never a
 * relay address, and always with the peer's ID at the end so the handshake proves who answered.
 */
import type { PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { isCircuitAddress } from '../../../contracts/relayed.js';
import { addrsLength, encodedLength, MAX_ADDRS, MAX_MESSAGE_BYTES } from './protocol.js';

export interface AddressRules {
  /** Whether an IP is reachable between sites (AddressPolicy.isPublic). */
  isPublic(ip: string): boolean;
  /** Whether one of this node's transports dials the address. */
  canDial(ma: Multiaddr): boolean;
}

/** IP then TCP, public, not through a relay, and dialable here. */
export function isPunchable(ma: Multiaddr, rules: AddressRules): boolean {
  if (isCircuitAddress(ma)) return false;
  const [ip, tcp] = ma.getComponents();
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcp?.name !== 'tcp' || ip.value === undefined)
    return false;
  return rules.isPublic(ip.value) && rules.canDial(ma);
}

function names(value: string, peer: PeerId): boolean {
  if (value === peer.toString()) return true;
  try {
    return peerIdFromString(value).equals(peer);
  } catch {
    return false;
  }
}

/** `ma` ending in `/p2p/<peer>`; undefined when it names another peer. */
function forPeer(ma: Multiaddr, peer: PeerId): Multiaddr | undefined {
  const named = ma.getComponents().findLast((c) => c.name === 'p2p')?.value;
  if (named === undefined) return ma.encapsulate(`/p2p/${peer.toString()}`);
  return names(named, peer) ? ma : undefined;
}

function punchableFor(addrs: Iterable<Multiaddr>, peer: PeerId, rules: AddressRules): Multiaddr[] {
  const out = new Map<string, Multiaddr>();
  for (const ma of addrs) {
    if (!isPunchable(ma, rules)) continue;
    const target = forPeer(ma, peer);
    if (target !== undefined) out.set(target.toString(), target);
  }
  return [...out.values()];
}

/** The peer's CONNECT addresses this node dials; undecodable ones are skipped. */
export function acceptOffer(addrs: readonly Uint8Array[], peer: PeerId, rules: AddressRules): Multiaddr[] {
  const decoded: Multiaddr[] = [];
  for (const bytes of addrs) {
    if (bytes.byteLength === 0) continue;
    try {
      decoded.push(multiaddr(bytes));
    } catch {
      // Not a multiaddr this node knows: nothing to dial there.
    }
  }
  return punchableFor(decoded, peer, rules);
}

/** A direct upgrade's targets: the peer's known addresses a hole punch would dial. */
export function unilateralTargets(
  known: readonly Multiaddr[],
  peer: PeerId,
  rules: AddressRules,
): Multiaddr[] {
  return punchableFor(known, peer, rules);
}

/**
 * This node's CONNECT addresses: its own (relay addresses left out: nobody punches to them), then
 * the observed candidates it does not hold already, each with `/p2p/<self>`. When the message
 * bounds bite, candidates are kept first: they are what a peer behind another NAT can use.
 */
export function offerAddresses(
  own: readonly Multiaddr[],
  candidates: readonly Multiaddr[],
  self: PeerId,
): Uint8Array[] {
  const direct = own.filter((ma) => !isCircuitAddress(ma));
  const known = new Set(own.map((ma) => ma.toString()));
  const extra = candidates
    .map((c) => c.encapsulate(`/p2p/${self.toString()}`))
    .filter((c) => !known.has(c.toString()));
  const keep = new Set<Multiaddr>();
  let bytes = encodedLength('CONNECT', []);
  for (const ma of [...extra, ...direct]) {
    if (keep.size === MAX_ADDRS) break;
    const size = addrsLength([ma.bytes]);
    if (bytes + size > MAX_MESSAGE_BYTES) continue;
    keep.add(ma);
    bytes += size;
  }
  return [...direct, ...extra].filter((ma) => keep.has(ma)).map((ma) => ma.bytes);
}
