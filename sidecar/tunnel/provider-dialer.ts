/**
 * Connections to a forward's providers: one dial per provider however many TCP connections wait
 * for it, a redial of fresh addresses from the network when the known ones fail, background dials
 * of healthy providers not yet connected, and the outcome of each dial recorded in the pool.
 */
import type { Connection, Libp2p, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { ServiceDirectory } from '../discovery/service-directory.js';
import { bestConnection } from '../node/connection-paths.js';
import type { Logger } from '../node/logger.js';
import { StreamOpenError } from './stream-open-error.js';

export interface ProviderDialerComponents {
  libp2p: Pick<Libp2p, 'dial' | 'getConnections'>;
  directory: Pick<ServiceDirectory, 'pool' | 'freshAddresses'>;
  logger: Logger;
}

/** Parsed provider peer IDs kept per forward before the cache starts over. */
const MAX_CACHED_PEER_IDS = 1_024;

/** A provider could not be connected to at all (the pool already counted it). */
export class ProviderDialError extends StreamOpenError {
  constructor(message: string, options?: ErrorOptions) {
    super('dial_failed', message, options);
    this.name = 'ProviderDialError';
  }
}

export class ProviderDialer {
  private readonly pendingDials = new Map<string, Promise<Connection>>();
  /**
   * Parsed peer IDs of providers. A fresh PeerId per TCP connection cost a base58 decode and,
   * in getConnections, an encode: ~4% of a forwarder's CPU at a high connection rate.
   */
  private readonly peerIds = new Map<string, PeerId>();

  constructor(
    private readonly c: ProviderDialerComponents,
    private readonly service: string,
    private readonly dialTimeoutMs: number,
  ) {}

  /** The best open connection to the peer, if any. */
  connection(peer: string): Connection | undefined {
    return bestConnection(this.c.libp2p.getConnections(this.peerIdOf(peer)));
  }

  isConnected(peer: string): boolean {
    return this.connection(peer) !== undefined;
  }

  /** Dials every healthy provider this node holds no connection to, in the background. */
  connectUnconnected(): void {
    const pool = this.c.directory.pool(this.service);
    for (const peer of pool?.unconnected(Date.now(), (p) => this.isConnected(p)) ?? [])
      this.connectInBackground(peer);
  }

  /** Dials a provider nobody waits for yet; the outcome lands in the pool. */
  connectInBackground(peer: string): void {
    if (this.pendingDials.has(peer)) return;
    this.connectionTo(peer).catch(() => {
      // Counted and logged by connectionTo.
    });
  }

  /**
   * The first of `peers` to have a connection (dialling those without one, or joining their
   * dials); failed ones leave the set. Undefined once every one failed.
   */
  async firstConnected(peers: Set<string>, onError: (err: unknown) => void): Promise<string | undefined> {
    if (peers.size === 0) return undefined;
    try {
      return await Promise.any(
        [...peers].map((peer) =>
          this.connectionTo(peer).then(
            () => peer,
            (err: unknown) => {
              peers.delete(peer);
              onError(err);
              throw err;
            },
          ),
        ),
      );
    } catch {
      return undefined;
    }
  }

  /** An open connection to the peer, dialling once for all the TCP connections that need it. */
  connectionTo(peer: string): Promise<Connection> {
    const peerId = this.peerIdOf(peer);
    const existing = bestConnection(this.c.libp2p.getConnections(peerId));
    if (existing !== undefined) return Promise.resolve(existing);
    let pending = this.pendingDials.get(peer);
    if (pending === undefined) {
      pending = this.c.libp2p
        .dial(peerId, { signal: AbortSignal.timeout(this.dialTimeoutMs) })
        .catch(async (err: unknown) => {
          // Its addresses may be stale (its relay died and it reserved on another): ask the
          // network once, and dial again only the addresses that brought and were not tried.
          const fresh = await this.c.directory.freshAddresses(this.service, peer, this.dialTimeoutMs);
          if (fresh.length === 0) throw err;
          this.c.logger.info(
            {
              event: 'provider_addresses_refreshed',
              service: this.service,
              peer,
              addresses: fresh.map((a) => a.toString()),
            },
            'dial failed, dialling the fresh addresses',
          );
          // One at a time in that order: libp2p would re-sort a list, maybe loopback first.
          const deadline = AbortSignal.timeout(this.dialTimeoutMs);
          let last: unknown = err;
          for (const addr of fresh) {
            if (deadline.aborted) break;
            try {
              return await this.c.libp2p.dial(addr, { signal: deadline });
            } catch (e) {
              last = e;
            }
          }
          throw last;
        })
        .catch((err: unknown) => {
          // Once per dial: a dead provider backs off however many connections waited for it.
          const pool = this.c.directory.pool(this.service);
          pool?.failed(peer, Date.now());
          const state = pool?.list().find((p) => p.peer === peer);
          this.c.logger.info(
            {
              event: 'provider_unreachable',
              service: this.service,
              peer,
              failures: state?.failures ?? null,
              retryInMs: state === undefined ? null : Math.max(0, state.retryAt - Date.now()),
            },
            'could not connect to a provider, backing off',
          );
          throw new ProviderDialError(`cannot reach ${peer}`, { cause: err });
        })
        .finally(() => this.pendingDials.delete(peer));
      this.pendingDials.set(peer, pending);
    }
    return pending;
  }

  private peerIdOf(peer: string): PeerId {
    let id = this.peerIds.get(peer);
    if (id === undefined) {
      // Providers come and go (dead pods): never let the cache outgrow a sane provider count.
      if (this.peerIds.size >= MAX_CACHED_PEER_IDS) this.peerIds.clear();
      id = peerIdFromString(peer);
      this.peerIds.set(peer, id);
    }
    return id;
  }
}
