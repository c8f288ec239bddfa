/**
 * Candidate public addresses of this node, learnt from how peers see it (identify's observedAddr).
 *
 * identify drops every observed TCP address (js-libp2p issue 2620: stock TCP dials come from
 * ephemeral ports, so what a peer sees is useless). With reuse-port dials the address a peer sees
 * is the NAT's mapping of the listening port, which is exactly what DCUtR must trade. These
 * candidates are given to the hole puncher only: they are never announced (`confirmObservedAddr`
 * would advertise an address whose NAT drops unsolicited SYNs, and AutoNAT would withdraw it
 * again).
 *
 * Trust: an observation counts only when it comes over a direct connection from a peer whose own
 * address is public (per the AddressPolicy) and names a public TCP address. One observation from a
 * configured relay/bootstrap peer is enough (PSK membership and configuration are trust); others
 * need two distinct observers. When trusted observers disagree on the port for the same IP, the
 * NAT maps per destination (symmetric): its ports are useless to a peer, so there are no
 * candidates at all and hole punching fails fast instead of dialling wrong ports.
 */

import type { Connection, PeerId } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { isRelayedConnection } from '../../contracts/relayed.js';
import type { AddressPolicy } from './address-policy.js';

export interface ObservedAddrsInit {
  /** How long one observation counts, ms. @default 600000 (10 min) */
  ttlMs?: number;
  /** Observers needed for an address when none of them is a trusted peer. @default 2 */
  threshold?: number;
  /** Upper bound of remembered observations (oldest dropped first). @default 256 */
  maxObservations?: number;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

/** What an observation needs from identify's result. */
export interface Observation {
  peerId: PeerId;
  observedAddr?: Multiaddr;
  connection: Pick<Connection, 'remoteAddr' | 'limits'>;
}

interface Seen {
  ip: string;
  port: number;
  observer: string;
  trusted: boolean;
  at: number;
}

/** Host and port of /ip4|ip6/<ip>/tcp/<port>[/p2p/...]; undefined otherwise. */
function tcpEndpoint(ma: Multiaddr): { ip: string; port: number; family: 4 | 6 } | undefined {
  const [ip, tcp] = ma.getComponents();
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcp?.name !== 'tcp' || ip.value === undefined) return;
  const port = Number(tcp.value);
  if (!Number.isInteger(port) || port <= 0) return;
  return { ip: ip.value, port, family: ip.name === 'ip4' ? 4 : 6 };
}

export class ObservedAddrs {
  private readonly seen: Seen[] = [];
  private readonly ttlMs: number;
  private readonly threshold: number;
  private readonly maxObservations: number;
  private readonly now: () => number;

  constructor(
    private readonly policy: AddressPolicy,
    /** Peer IDs whose word alone is enough: the configured relays/bootstrap peers. */
    private readonly trustedPeers: ReadonlySet<string>,
    init: ObservedAddrsInit = {},
  ) {
    this.ttlMs = init.ttlMs ?? 600_000;
    this.threshold = init.threshold ?? 2;
    this.maxObservations = init.maxObservations ?? 256;
    this.now = init.now ?? Date.now;
  }

  /** Records one identify result; returns true when it was kept as an observation. */
  observe(result: Observation): boolean {
    const { observedAddr, connection } = result;
    if (observedAddr === undefined) return false;
    // A relayed connection's observed address is the relay's view of the relay: meaningless.
    if (isRelayedConnection(connection)) return false;
    const remote = tcpEndpoint(connection.remoteAddr);
    // Only a peer on a public address sees our NAT's public side (a LAN peer sees our LAN address).
    if (remote === undefined || !this.policy.isPublic(remote.ip)) return false;
    const seen = tcpEndpoint(observedAddr);
    if (seen === undefined || !this.policy.isPublic(seen.ip)) return false;
    const observer = result.peerId.toString();
    const at = this.now();
    const i = this.seen.findIndex((s) => s.observer === observer && s.ip === seen.ip);
    // One observer holds one view per IP: its latest (a reconnect through a new mapping replaces it).
    if (i >= 0) this.seen.splice(i, 1);
    this.seen.push({ ip: seen.ip, port: seen.port, observer, trusted: this.trustedPeers.has(observer), at });
    while (this.seen.length > this.maxObservations) this.seen.shift();
    return true;
  }

  /** Current candidates as /ip4/<ip>/tcp/<port> (no peer id), best supported first. */
  candidates(): Multiaddr[] {
    this.expire();
    const byIp = new Map<string, Seen[]>();
    for (const s of this.seen) byIp.set(s.ip, [...(byIp.get(s.ip) ?? []), s]);
    const out: Array<{ ma: Multiaddr; support: number }> = [];
    for (const [ip, list] of byIp) {
      // Two trusted views with different ports: the mapping depends on the destination.
      if (new Set(list.filter((s) => s.trusted).map((s) => s.port)).size > 1) continue;
      const ports = new Map<number, Seen[]>();
      for (const s of list) ports.set(s.port, [...(ports.get(s.port) ?? []), s]);
      for (const [port, views] of ports) {
        const observers = new Set(views.map((v) => v.observer)).size;
        if (views.some((v) => v.trusted) || observers >= this.threshold) {
          const family = ip.includes(':') ? 'ip6' : 'ip4';
          out.push({ ma: multiaddr(`/${family}/${ip}/tcp/${port}`), support: observers });
        }
      }
    }
    return out.sort((a, b) => b.support - a.support).map((c) => c.ma);
  }

  /** Whether peers see this node through a NAT whose port mapping depends on the destination. */
  symmetric(): boolean {
    this.expire();
    const trustedPorts = new Map<string, Set<number>>();
    for (const s of this.seen) {
      if (!s.trusted) continue;
      const set = trustedPorts.get(s.ip) ?? new Set<number>();
      set.add(s.port);
      trustedPorts.set(s.ip, set);
    }
    return [...trustedPorts.values()].some((ports) => ports.size > 1);
  }

  /** Whether any trusted or agreed observation exists at all. */
  get observed(): boolean {
    this.expire();
    return this.seen.length > 0;
  }

  private expire(): void {
    const cutoff = this.now() - this.ttlMs;
    while (this.seen.length > 0 && (this.seen[0]?.at ?? 0) < cutoff) this.seen.shift();
  }
}
