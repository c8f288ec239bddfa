/**
 * Bounds on what a source address that does not hold the swarm key can take from the node.
 *
 * Until noise completes (proof of the swarm key), an inbound TCP connection holds one of libp2p's
 * pending-connection slots (`maxIncomingPendingConnections`, shared by everyone). One source could
 * hold them all with idle sockets and every new inbound connection would be refused. So, per
 * source IP address, through libp2p's connection gater:
 *   - new inbound connections are rate-limited (a token bucket; libp2p's own per-host limit,
 *     `inboundConnectionThreshold`, stays as a loose backstop because its refusals are silent);
 *   - connections not yet authenticated are capped;
 * and the protector gives the nonce exchange a short deadline (sidecar/crypto/pnet-protector.ts).
 * Relayed connections arrive over an already authenticated connection to the relay and are not
 * counted. Every refusal is counted by reason and logged (at most once per LOG_EVERY_MS per
 * reason, with the number left unlogged: a flood must not become a flood of log lines).
 */
import type { ConnectionGater, MultiaddrConnection } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Logger } from './logger.js';

export type InboundRefusal = 'rate_per_address' | 'pending_per_address' | 'nonce_timeout' | 'swarm_key';
export const INBOUND_REFUSALS: readonly InboundRefusal[] = [
  'rate_per_address',
  'pending_per_address',
  'nonce_timeout',
  'swarm_key',
];

export interface InboundLimits {
  /** Inbound connections of one address not yet authenticated (noise not done). */
  pendingPerAddress: number;
  /** New inbound connections one address may open per second (burst: the same number). */
  newPerAddressPerSecond: number;
}

const LOG_EVERY_MS = 10_000;
/** Addresses whose rate is tracked at once; idle ones are dropped first. */
const MAX_TRACKED = 10_000;

/** The source IP of a direct connection; undefined for relayed or non-IP ones. */
export function sourceAddress(ma: Multiaddr): string | undefined {
  const components = ma.getComponents();
  if (components.some((c) => c.name === 'p2p-circuit')) return undefined;
  return components.find((c) => c.name === 'ip4' || c.name === 'ip6')?.value;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class InboundGuard {
  readonly limits: InboundLimits;
  private readonly logger: Logger;
  private readonly buckets = new Map<string, Bucket>();
  private readonly pending = new Map<string, number>();
  /** Pending connections by object, so each is released once, however it ends. */
  private readonly pendingConns = new Map<MultiaddrConnection, string>();
  private readonly totals = new Map<InboundRefusal, number>();
  private readonly lastLog = new Map<InboundRefusal, { at: number; unlogged: number }>();
  private listener: ((reason: InboundRefusal, count: number) => void) | undefined;
  private readonly now: () => number;

  constructor(limits: InboundLimits, logger: Logger, now: () => number = Date.now) {
    this.limits = limits;
    this.logger = logger;
    this.now = now;
  }

  /** libp2p's `connectionGater`. */
  readonly gater: ConnectionGater = {
    denyInboundConnection: (maConn) => this.admit(maConn) === false,
    // Noise is done: the peer holds the key, the connection is no longer pre-authentication.
    denyInboundEncryptedConnection: (_peer, maConn) => {
      this.release(maConn);
      return false;
    },
  };

  /** Reports each refusal as it happens (once; earlier ones are replayed). */
  onRefused(listener: (reason: InboundRefusal, count: number) => void): void {
    this.listener = listener;
    for (const [reason, n] of this.totals) listener(reason, n);
  }

  /** The protector's nonce deadline passed on an inbound connection. */
  nonceTimedOut(remoteAddr: Multiaddr): void {
    this.refuse('nonce_timeout', sourceAddress(remoteAddr) ?? remoteAddr.toString());
  }

  /** An inbound connection's first bytes decrypted under no swarm key of this node. */
  swarmKeyMismatch(remoteAddr: Multiaddr): void {
    this.refuse('swarm_key', sourceAddress(remoteAddr) ?? remoteAddr.toString());
  }

  /** Refusals so far, by reason. */
  refusals(): Record<InboundRefusal, number> {
    return Object.fromEntries(INBOUND_REFUSALS.map((r) => [r, this.totals.get(r) ?? 0])) as Record<
      InboundRefusal,
      number
    >;
  }

  /** Connections of `address` not yet authenticated. */
  pendingFrom(address: string): number {
    return this.pending.get(address) ?? 0;
  }

  private admit(maConn: MultiaddrConnection): boolean {
    const address = sourceAddress(maConn.remoteAddr);
    if (address === undefined) return true;
    if (!this.take(address)) {
      this.refuse('rate_per_address', address);
      return false;
    }
    const pending = this.pending.get(address) ?? 0;
    if (pending >= this.limits.pendingPerAddress) {
      this.refuse('pending_per_address', address);
      return false;
    }
    this.pending.set(address, pending + 1);
    this.pendingConns.set(maConn, address);
    maConn.addEventListener('close', () => this.release(maConn), { once: true });
    return true;
  }

  private release(maConn: MultiaddrConnection): void {
    const address = this.pendingConns.get(maConn);
    if (address === undefined) return;
    this.pendingConns.delete(maConn);
    const left = (this.pending.get(address) ?? 1) - 1;
    if (left > 0) this.pending.set(address, left);
    else this.pending.delete(address);
  }

  /** Takes one token from the address's bucket; false when it is empty. */
  private take(address: string): boolean {
    const rate = this.limits.newPerAddressPerSecond;
    const now = this.now();
    let bucket = this.buckets.get(address);
    if (bucket === undefined) {
      if (this.buckets.size >= MAX_TRACKED) this.sweep(now);
      bucket = { tokens: rate, at: now };
      this.buckets.set(address, bucket);
    } else {
      bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate);
      bucket.at = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Drops buckets that have refilled (their address is idle); all of them if that is not enough. */
  private sweep(now: number): void {
    const rate = this.limits.newPerAddressPerSecond;
    for (const [address, b] of this.buckets)
      if (b.tokens + ((now - b.at) / 1000) * rate >= rate) this.buckets.delete(address);
    if (this.buckets.size >= MAX_TRACKED) this.buckets.clear();
  }

  private refuse(reason: InboundRefusal, address: string): void {
    this.totals.set(reason, (this.totals.get(reason) ?? 0) + 1);
    this.listener?.(reason, 1);
    const now = this.now();
    const last = this.lastLog.get(reason);
    if (last !== undefined && now - last.at < LOG_EVERY_MS) {
      last.unlogged++;
      return;
    }
    this.lastLog.set(reason, { at: now, unlogged: 0 });
    this.logger.warn(
      { event: 'inbound_refused', reason, address, unlogged: last?.unlogged ?? 0, limits: this.limits },
      `inbound connection refused before authentication (${reason})`,
    );
  }
}
