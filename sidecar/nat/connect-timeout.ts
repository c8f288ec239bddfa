/**
 * `withConnectTimeout()`: a shorter TCP connect timeout for addresses that are unlikely to be
 * reachable from another site (private, CGNAT, loopback: what `AddressPolicy` does not count as
 * public).
 *
 * js-libp2p dials a peer's addresses one after another, each bounded only by the connection
 * manager's `addressDialTimeout` (6 s). A pod announces its pod IP, which a pod in the same
 * cluster reaches in milliseconds and a pod in another cluster never reaches: the SYN vanishes (no
 * route, or an ICMP error that the router rate-limits). Every first dial to a remote pod then sat
 * up to 6 s on its pod IP before the circuit address behind it was tried. Measured in the NAT
 * lab: a relay-only site forwarding again 12.6-15 s after its relay died, of which 6 s per dial on
 * the remote's NATed LAN address. A connect (SYN to SYN-ACK, not the upgrade) that has not
 * completed within `PRIVATE_CONNECT_TIMEOUT_MS` on such an address is given up, so the next
 * address is tried instead; and for `UNREACHABLE_MEMORY_MS` after that, a dial to that same
 * address of that same peer fails at once (every new stream's dial, the DHT's and the hole
 * puncher's would otherwise each wait out the timeout again).
 */
import type { Transport } from '@libp2p/interface';
import type { TCPComponents } from '@libp2p/tcp';
import type { Multiaddr } from '@multiformats/multiaddr';
import { addTcpConnectLayer } from '../patches/tcp.js';
import { AddressPolicy } from './address-policy.js';
import { PRIVATE_CONNECT_TIMEOUT_MS, UNREACHABLE_MEMORY_MS } from './constants.js';

/** Thrown (as the abort reason) when a connect outlived its address's timeout. */
export class ConnectTimeoutError extends Error {
  override readonly name = 'ConnectTimeoutError';
}

/** The connect timeout for `ma` under `policy`: undefined (the dial's own) for public addresses. */
export function connectTimeoutFor(ma: Multiaddr, policy: AddressPolicy): number | undefined {
  const ip = AddressPolicy.ipOf(ma.toString());
  if (ip === undefined) return undefined;
  return policy.isPublic(ip) ? undefined : PRIVATE_CONNECT_TIMEOUT_MS;
}

/**
 * Runs `connect` with a signal that also aborts after `timeoutMs`, and never after the connect
 * settled: @libp2p/tcp hands the signal to `net.connect`, which would destroy an established
 * socket if it fired later.
 */
export async function connectWithin<T>(
  connect: (signal: AbortSignal) => Promise<T>,
  outer: AbortSignal,
  timeoutMs: number,
): Promise<T> {
  const controller = new AbortController();
  const onOuterAbort = () => controller.abort(outer.reason);
  if (outer.aborted) onOuterAbort();
  else outer.addEventListener('abort', onOuterAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new ConnectTimeoutError(`no connection within ${timeoutMs} ms`));
  }, timeoutMs);
  try {
    return await connect(controller.signal);
  } catch (err) {
    // @libp2p/tcp rejects an aborted connect with its own AbortError, whatever the reason.
    if (timedOut) throw new ConnectTimeoutError(`no connection within ${timeoutMs} ms`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
    outer.removeEventListener('abort', onOuterAbort);
  }
}

/** Addresses (with their /p2p/<peer>) whose connect timed out lately: not worth dialling again yet. */
export class UnreachableAddresses {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly memoryMs: number = UNREACHABLE_MEMORY_MS,
    private readonly maxEntries: number = 1_024,
  ) {}

  remember(address: string, now: number = Date.now()): void {
    // Insertion order is age order: drop the oldest when full.
    if (this.until.size >= this.maxEntries) {
      const oldest = this.until.keys().next().value;
      if (oldest !== undefined) this.until.delete(oldest);
    }
    this.until.delete(address);
    this.until.set(address, now + this.memoryMs);
  }

  /** Ms left before `address` may be dialled again; 0 when it may be now. */
  remaining(address: string, now: number = Date.now()): number {
    const until = this.until.get(address);
    if (until === undefined) return 0;
    if (until <= now) {
      this.until.delete(address);
      return 0;
    }
    return until - now;
  }
}

/**
 * Wraps a TCP transport factory (@libp2p/tcp or `reusePortTcp`) so that each connect to an
 * address for which `timeoutFor` gives a number is bounded by it: a layer of the one `_connect`
 * patch (sidecar/patches/tcp.ts). Listening, upgrade and everything else stay the transport's own.
 */
export function withConnectTimeout(
  factory: (components: TCPComponents) => Transport,
  timeoutFor: (ma: Multiaddr) => number | undefined,
  unreachable: UnreachableAddresses = new UnreachableAddresses(),
): (components: TCPComponents) => Transport {
  return (components) => {
    const transport = factory(components);
    addTcpConnectLayer(transport, (connect) => (ma, options) => {
      const timeoutMs = timeoutFor(ma);
      if (timeoutMs === undefined) return connect(ma, options);
      const address = ma.toString();
      const waitMs = unreachable.remaining(address);
      if (waitMs > 0) {
        return Promise.reject(
          new ConnectTimeoutError(
            `no connection within ${timeoutMs} ms on the last try; not dialled again for ${waitMs} ms`,
          ),
        );
      }
      return connectWithin((signal) => connect(ma, { ...options, signal }), options.signal, timeoutMs).catch(
        (err: unknown) => {
          if (err instanceof ConnectTimeoutError) unreachable.remember(address);
          throw err;
        },
      );
    });
    return transport;
  };
}
