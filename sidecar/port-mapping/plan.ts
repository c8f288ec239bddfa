/**
 * The pure half of port mapping: defaults, when to renew a lease, how long to wait after a
 * failure, which listening port to map, and whether an inbound connection came through the mapping.
 */

/** Lease asked of the gateway, in seconds. Short, so a crashed node's mapping goes away soon. */
export const DEFAULT_LEASE_SECONDS = 600;
/** Gateways (miniupnpd's NAT-PMP) may cap short leases up; below this renewing is mostly traffic. */
export const MIN_LEASE_SECONDS = 2;
/** How long to look for a UPnP gateway by SSDP before trying the next protocol. */
export const DEFAULT_DISCOVERY_TIMEOUT_MS = 5_000;
/** One request to the gateway (SOAP call, NAT-PMP exchange with its retransmissions). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 8_000;
/** Removing the mapping on stop: bounded so a dead gateway cannot hold up shutdown. */
export const DEFAULT_UNMAP_TIMEOUT_MS = 3_000;
/** After a failed renewal, retry within these bounds (a quarter of the time left, clamped). */
export const RENEW_RETRY_MIN_MS = 1_000;
export const RENEW_RETRY_MAX_MS = 30_000;
/** After failing to map at all: exponential backoff between these bounds. */
export const REMAP_BACKOFF_MIN_MS = 5_000;
export const REMAP_BACKOFF_MAX_MS = 5 * 60_000;
/**
 * NAT-PMP retransmission (RFC 6886 §3.1 starts at 250 ms and doubles). The library never
 * retransmits, so each attempt is a fresh client; five attempts (7.75 s in all) are plenty on a LAN.
 */
export const PMP_ATTEMPT_TIMEOUTS_MS: readonly number[] = [250, 500, 1_000, 2_000, 4_000];

export interface Lease {
  /** When the gateway granted (or last renewed) the mapping, ms since the epoch. */
  readonly grantedAt: number;
  /** Lifetime granted, in seconds. */
  readonly leaseSeconds: number;
}

export function leaseExpiry(lease: Lease): number {
  return lease.grantedAt + lease.leaseSeconds * 1_000;
}

/**
 * When to renew next. At half-life while renewals succeed (the usual client practice, and what
 * RFC 6886 §3.3 recommends); after `failures` failed attempts, again within a quarter of the time
 * left (clamped), never after expiry. `undefined` when the lease has run out.
 */
export function nextRenewalAt(lease: Lease, now: number, failures: number): number | undefined {
  const expiry = leaseExpiry(lease);
  if (now >= expiry) return undefined;
  if (failures === 0) return Math.max(now, lease.grantedAt + (lease.leaseSeconds * 1_000) / 2);
  const retry = Math.min(RENEW_RETRY_MAX_MS, Math.max(RENEW_RETRY_MIN_MS, (expiry - now) / 4));
  return Math.min(now + retry, expiry);
}

/** Wait before the `failures`-th attempt to map again (1-based): 5 s, 10 s, 20 s ... 5 min. */
export function remapBackoffMs(failures: number): number {
  const exp = Math.max(0, failures - 1);
  return Math.min(REMAP_BACKOFF_MAX_MS, REMAP_BACKOFF_MIN_MS * 2 ** Math.min(exp, 16));
}

/** The lease to ask for: whole seconds (NAT-PMP and UPnP both carry seconds), at least the minimum. */
export function normalizeLeaseSeconds(value: number | undefined): number {
  if (value === undefined || !Number.isFinite(value)) return DEFAULT_LEASE_SECONDS;
  return Math.max(MIN_LEASE_SECONDS, Math.round(value));
}

/**
 * The TCP port the node listens on at `internalHost`, from its transport multiaddrs (strings such
 * as `/ip4/198.18.1.10/tcp/4001`, already expanded from 0.0.0.0 by the transport). Only plain TCP
 * counts (not /ws or /p2p-circuit). Undefined when the node does not listen on that address.
 */
export function listenPortFor(transportAddrs: readonly string[], internalHost: string): number | undefined {
  for (const addr of transportAddrs) {
    const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)(\/p2p\/[^/]+)?$/.exec(addr);
    if (m === null) continue;
    if (m[1] === internalHost || m[1] === '0.0.0.0') return Number(m[2]);
  }
  return undefined;
}

export interface InboundFacts {
  readonly direction: 'inbound' | 'outbound';
  /** Relayed (circuit) connections never count. */
  readonly relayed: boolean;
  /** The remote IP as seen on the socket. */
  readonly remoteIp: string | undefined;
  /** Whether the NAT layer already knows better (a hole punch marks its connection). */
  readonly alreadyMarked: boolean;
}

/**
 * Whether an inbound connection came in through the port mapping. Behind a NAT (the mapping's
 * external IP is not our own), the only unsolicited way in from a public address is the gateway's
 * forwarding rule, so: inbound, not relayed, from an address the network counts as public, while
 * a mapping exists. A hole-punched connection also arrives from a public address; the hole punch
 * code marks its own connections, and those are left alone.
 */
export function viaPortMapping(
  facts: InboundFacts,
  mapping: { readonly internalHost: string; readonly externalIp: string } | undefined,
  isPublic: (ip: string) => boolean,
): boolean {
  if (mapping === undefined || mapping.externalIp === mapping.internalHost) return false;
  if (facts.direction !== 'inbound' || facts.relayed || facts.alreadyMarked) return false;
  return facts.remoteIp !== undefined && isPublic(facts.remoteIp);
}
