/**
 * Over 300 lines on purpose: the four replaced DCUtR steps share one per-peer round state.
 *
 * `holePunch()`: DCUtR (@libp2p/dcutr) made to work between NATed Node.js nodes.
 *
 * Stock DCUtR trades `addressManager.getAddresses()`, which never holds a NAT's public side
 * (identify drops observed TCP addresses), keeps only addresses `@libp2p/utils` calls public
 * (documentation and lab ranges are "private"), retries forever on every new relayed connection,
 * and closes the relayed connection right after an upgrade, which would cut every tunnel stream
 * still on it. Here the stock service is built with a components object whose address manager adds
 * the observed candidates (sidecar/nat/observed-addrs.ts), and four of its steps are replaced before
 * it starts: the address filter (the AddressPolicy decides), the unilateral upgrade (same filter),
 * the two upgrade entry points (bounded per peer, counted, reported), and the relayed connection's
 * close (deferred until its tunnel streams have finished).
 *
 * The simultaneous open itself needs dials from the listening port: reusePortTcp() in node.ts.
 */

import type { DCUtRServiceComponents } from '@libp2p/dcutr';
import {
  type Connection,
  type Libp2p,
  type PeerId,
  type Stream,
  serviceDependencies,
} from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { isCircuitAddress, isRelayedConnection } from '../../contracts/relayed.js';
import { DCUTR_DIAL_PRIORITY, type DcutrInternals, patchedDcutr } from '../patches/dcutr.js';
import { deferConnectionClose, type OutboundUpgrader, restoreResponderDials } from '../patches/libp2p.js';
import type { AddressPolicy } from './address-policy.js';
import { HolePunchSetupError } from './errors.js';
import { ObservedAddrs, type ObservedAddrsInit } from './observed-addrs.js';

export interface HolePunchInit {
  /** Which addresses count as reachable between sites. */
  policy: AddressPolicy;
  /** Peer IDs of configured relays/bootstrap peers: one observation from them is enough. */
  trustedObservers?: readonly string[];
  /** One DCUtR try's timeout, ms (a round makes up to `retries` tries). @default 5000 */
  timeoutMs?: number;
  /** Tries per round. @default 3 */
  retries?: number;
  /** Failed rounds per peer within `windowMs` after which this node stops trying. @default 3 */
  maxFailedRounds?: number;
  /** @default 600000 (10 min) */
  windowMs?: number;
  /** Delay before the second round; doubles for each further one. @default 2000 */
  retryDelayMs?: number;
  /**
   * How long a relayed connection that was upgraded stays open for the streams still on it, ms;
   * after that it is closed anyway. @default 3600000 (1 h)
   */
  relayDrainMs?: number;
  /** Streams that keep an upgraded relayed connection open. @default protocol starts with /x/ */
  isPayloadStream?: (stream: Stream) => boolean;
  observed?: ObservedAddrsInit;
}

export interface HolePunchComponents extends DCUtRServiceComponents {
  peerId: PeerId;
  upgrader: OutboundUpgrader;
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>;
}

export type HolePunchResult = 'success' | 'failure' | 'gave_up';

/** What the hole puncher tells its owner: typed, with a `type` field. */
export type HolePunchEvent =
  | { type: 'attempt'; peer: string; result: HolePunchResult; ms: number }
  | { type: 'upgraded'; peer: string; connection: Connection; path: 'hole_punched' | 'direct' }
  | { type: 'relay_closed'; peer: string; waitedMs: number; streamsLeft: number };

export interface HolePunchStatus {
  candidates: string[];
  symmetricNat: boolean;
  /** Peers this node has stopped punching to, until their window passes. */
  gaveUp: string[];
}

export interface HolePunch {
  readonly observed: ObservedAddrs;
  /** Subscribes to events; returns the unsubscribe function. */
  subscribe(listener: (event: HolePunchEvent) => void): () => void;
  status(): HolePunchStatus;
}

/** The peer ID a dial target names (a multiaddr or a list of them, with /p2p/). */
function peerOf(target: unknown): string | undefined {
  const first: unknown = Array.isArray(target) ? target[0] : target;
  return /\/p2p\/([^/]+)$/.exec(String(first))?.[1];
}

interface PeerRounds {
  failures: number[];
  running: boolean;
  retry?: NodeJS.Timeout;
}

class HolePunchService implements HolePunch {
  readonly [Symbol.toStringTag] = '@peertunnel/hole-punch';
  readonly observed: ObservedAddrs;
  private readonly inner: Pick<DcutrInternals, 'start' | 'stop' | 'isStarted'>;
  private readonly listeners = new Set<(event: HolePunchEvent) => void>();
  private readonly rounds = new Map<string, PeerRounds>();
  private readonly punched = new WeakSet<Connection>();
  private readonly drains = new Set<NodeJS.Timeout>();
  /** Peers DCUtR is dialing right now (count of dials), to mark their new connection at once. */
  private readonly punching = new Map<string, number>();
  /** Multiaddrs DCUtR is dialing as the TCP simultaneous-open responder (B). */
  private readonly responderDials = new Set<string>();
  private readonly maxFailedRounds: number;
  private readonly windowMs: number;
  private readonly retryDelayMs: number;
  private readonly relayDrainMs: number;
  private readonly timeoutMs: number;
  private readonly isPayloadStream: (stream: Stream) => boolean;
  private stopped = false;

  constructor(
    private readonly components: HolePunchComponents,
    private readonly init: HolePunchInit,
  ) {
    this.observed = new ObservedAddrs(init.policy, new Set(init.trustedObservers ?? []), init.observed);
    this.maxFailedRounds = init.maxFailedRounds ?? 3;
    this.windowMs = init.windowMs ?? 600_000;
    this.retryDelayMs = init.retryDelayMs ?? 2_000;
    this.relayDrainMs = init.relayDrainMs ?? 3_600_000;
    this.timeoutMs = init.timeoutMs ?? 5_000;
    this.isPayloadStream = init.isPayloadStream ?? ((s) => s.protocol?.startsWith('/x/') === true);
    const self = components.peerId;
    const addressManager = components.addressManager;
    // dcutr reads only getAddresses(); the rest of the address manager stays the real one.
    const withCandidates: DCUtRServiceComponents['addressManager'] = Object.create(addressManager, {
      getAddresses: {
        value: (): Multiaddr[] => {
          const real = addressManager.getAddresses();
          const known = new Set(real.map((a) => a.toString()));
          const extra = this.observed
            .candidates()
            .map((c) => c.encapsulate(`/p2p/${self.toString()}`))
            .filter((c) => !known.has(c.toString()));
          return [...real, ...extra];
        },
      },
    });
    const connectionManager = components.connectionManager;
    const trackingConnections: DCUtRServiceComponents['connectionManager'] = Object.create(
      connectionManager,
      {
        openConnection: {
          value: async (
            ...args: Parameters<DCUtRServiceComponents['connectionManager']['openConnection']>
          ): Promise<Connection> => {
            const [target, options] = args;
            const responder =
              options?.initiator === false ? (Array.isArray(target) ? target : [target]).map(String) : [];
            const punching = options?.priority === DCUTR_DIAL_PRIORITY ? peerOf(target) : undefined;
            for (const key of responder) this.responderDials.add(key);
            if (punching !== undefined) this.punching.set(punching, (this.punching.get(punching) ?? 0) + 1);
            try {
              const connection = await connectionManager.openConnection(...args);
              if (punching !== undefined) this.punched.add(connection);
              return connection;
            } finally {
              for (const key of responder) this.responderDials.delete(key);
              if (punching !== undefined) {
                const n = (this.punching.get(punching) ?? 1) - 1;
                if (n > 0) this.punching.set(punching, n);
                else this.punching.delete(punching);
              }
            }
          },
        },
      },
    );
    this.inner = patchedDcutr(
      components,
      { addressManager: withCandidates, connectionManager: trackingConnections },
      { timeout: this.timeoutMs, retries: init.retries ?? 3 },
      {
        getDialableMultiaddrs: (addrs) => this.dialable(addrs),
        attemptUnilateralConnectionUpgrade: (connection) => this.unilateral(connection),
        // B: the inbound side of a relayed connection drives the rounds.
        upgradeInbound: (relayed, stock) => this.round(relayed, stock),
        // A: answers B's Connect and dials at its Sync.
        handleIncomingUpgrade: (stream, relayed, stock) => this.answer(stream, relayed, stock),
      },
    );
    restoreResponderDials(components.transportManager, components.upgrader, (ma) =>
      this.responderDials.has(ma.toString()),
    );
    this.onIdentify = this.onIdentify.bind(this);
    this.onOpen = this.onOpen.bind(this);
  }

  readonly [serviceDependencies] = ['@libp2p/identify'];

  isStarted(): boolean {
    return this.inner.isStarted();
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.components.events.addEventListener('peer:identify', this.onIdentify);
    this.components.events.addEventListener('connection:open', this.onOpen);
    await this.inner.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.components.events.removeEventListener('peer:identify', this.onIdentify);
    this.components.events.removeEventListener('connection:open', this.onOpen);
    for (const r of this.rounds.values()) clearTimeout(r.retry);
    for (const t of this.drains) clearTimeout(t);
    this.drains.clear();
    await this.inner.stop();
  }

  subscribe(listener: (event: HolePunchEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): HolePunchStatus {
    const now = Date.now();
    return {
      candidates: this.observed.candidates().map((c) => c.toString()),
      symmetricNat: this.observed.symmetric(),
      gaveUp: [...this.rounds.entries()]
        .filter(([, r]) => this.recentFailures(r, now) >= this.maxFailedRounds)
        .map(([peer]) => peer),
    };
  }

  private emit(event: HolePunchEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A listener's failure is its own; the hole puncher goes on.
      }
    }
  }

  private onIdentify(evt: CustomEvent<Parameters<ObservedAddrs['observe']>[0]>): void {
    this.observed.observe(evt.detail);
  }

  /**
   * The connection a punch dial opened, announced as soon as it opens: this listener runs before
   * the node's own (services start first), so the first path it logs is already hole_punched.
   */
  private onOpen(evt: CustomEvent<Connection>): void {
    const c = evt.detail;
    const peer = c.remotePeer.toString();
    if (isRelayedConnection(c) || !this.punching.has(peer)) return;
    this.punched.add(c);
    this.emit({ type: 'upgraded', peer, connection: c, path: 'hole_punched' });
  }

  private roundsOf(peer: string): PeerRounds {
    let r = this.rounds.get(peer);
    if (r === undefined) {
      r = { failures: [], running: false };
      this.rounds.set(peer, r);
    }
    return r;
  }

  private recentFailures(r: PeerRounds, now: number): number {
    r.failures = r.failures.filter((t) => now - t < this.windowMs);
    return r.failures.length;
  }

  /** An open direct connection to the peer, if there is one. */
  private directTo(peer: PeerId): Connection | undefined {
    return this.components.connectionManager
      .getConnections(peer)
      .find((c) => c.status === 'open' && !isRelayedConnection(c));
  }

  /** A: answers B's Connect and dials at its Sync, unless this peer failed too often lately. */
  private async answer(
    stream: Stream,
    relayed: Connection,
    stock: (s: Stream, c: Connection) => Promise<void>,
  ): Promise<void> {
    const peer = relayed.remotePeer.toString();
    const r = this.roundsOf(peer);
    if (this.recentFailures(r, Date.now()) >= this.maxFailedRounds * (this.init.retries ?? 3)) {
      this.emit({ type: 'attempt', peer, result: 'gave_up', ms: 0 });
      stream.abort(new HolePunchSetupError(`too many failed hole punches with ${peer}`));
      return;
    }
    const started = performance.now();
    const restore = this.deferClose(relayed);
    try {
      await stock(stream, relayed);
    } catch (err) {
      r.failures.push(Date.now());
      throw err;
    } finally {
      restore();
    }
    this.upgraded(relayed.remotePeer, performance.now() - started, false);
  }

  /** One bounded round as B; schedules the next one while the peer is only relayed. */
  private async round(relayed: Connection, upgradeInbound: (c: Connection) => Promise<void>): Promise<void> {
    const peer = relayed.remotePeer.toString();
    const r = this.roundsOf(peer);
    if (r.running || this.stopped) return;
    if (this.directTo(relayed.remotePeer) !== undefined) return;
    if (this.recentFailures(r, Date.now()) >= this.maxFailedRounds) {
      this.emit({ type: 'attempt', peer, result: 'gave_up', ms: 0 });
      return;
    }
    r.running = true;
    const started = performance.now();
    const restore = this.deferClose(relayed);
    try {
      // The stock round never rejects after its last try (and logs every failure itself).
      await upgradeInbound(relayed).catch(() => undefined);
    } finally {
      restore();
      r.running = false;
    }
    const ms = performance.now() - started;
    if (this.upgraded(relayed.remotePeer, ms, true)) return;
    r.failures.push(Date.now());
    this.emit({ type: 'attempt', peer, result: 'failure', ms });
    const failures = this.recentFailures(r, Date.now());
    if (failures < this.maxFailedRounds && relayed.status === 'open' && !this.stopped) {
      clearTimeout(r.retry);
      r.retry = setTimeout(
        () => {
          r.retry = undefined;
          void this.round(relayed, upgradeInbound);
        },
        this.retryDelayMs * 2 ** (failures - 1),
      );
      r.retry.unref();
    }
  }

  /** After a round: reports the direct connection it left, if any. */
  private upgraded(peerId: PeerId, ms: number, count: boolean): boolean {
    const direct = this.directTo(peerId);
    if (direct === undefined) return false;
    const peer = peerId.toString();
    if (count) this.emit({ type: 'attempt', peer, result: 'success', ms });
    this.rounds.delete(peer);
    this.emit({
      type: 'upgraded',
      peer,
      connection: direct,
      path: this.punched.has(direct) ? 'hole_punched' : 'direct',
    });
    return true;
  }

  /** DCUtR's address filter with the AddressPolicy: public IP + TCP, dialable, not relayed. */
  private dialable(addrs: Array<Uint8Array | undefined>): Multiaddr[] {
    const out: Multiaddr[] = [];
    for (const bytes of addrs) {
      if (bytes === undefined || bytes.length === 0) continue;
      let ma: Multiaddr;
      try {
        ma = multiaddr(bytes);
      } catch {
        continue;
      }
      if (this.usable(ma)) out.push(ma);
    }
    return out;
  }

  private usable(ma: Multiaddr): boolean {
    const text = ma.toString();
    if (isCircuitAddress(text)) return false;
    const [ip, tcp] = ma.getComponents();
    if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcp?.name !== 'tcp' || ip.value === undefined)
      return false;
    if (!this.init.policy.isPublic(ip.value)) return false;
    return this.components.transportManager.dialTransportForMultiaddr(ma) !== undefined;
  }

  /** Dial the peer's own announced public addresses (a reachable or port-mapped peer). */
  private async unilateral(relayed: Connection): Promise<boolean> {
    const peer = relayed.remotePeer;
    let addrs: Multiaddr[];
    try {
      addrs = (await this.components.peerStore.get(peer)).addresses
        .map((a) => a.multiaddr)
        .filter((ma) => this.usable(ma))
        .map((ma) => (ma.toString().includes('/p2p/') ? ma : ma.encapsulate(`/p2p/${peer.toString()}`)));
    } catch {
      return false;
    }
    if (addrs.length === 0) return false;
    try {
      const connection = await this.components.connectionManager.openConnection(addrs, {
        signal: AbortSignal.timeout(this.timeoutMs),
        force: true,
      });
      if (isRelayedConnection(connection)) return false;
      await relayed.close();
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Replaces the relayed connection's close for the duration of a round: DCUtR closes it right
   * after an upgrade, and yamux's close half-closes every stream on it, so a tunnel stream would
   * lose the rest of its data. The deferred close waits until no payload stream is left (capped),
   * then closes for real. Returns the function that puts the stock close back.
   */
  private deferClose(relayed: Connection): () => void {
    const peer = relayed.remotePeer.toString();
    return deferConnectionClose(relayed, async (realClose) => {
      const started = Date.now();
      const poll = (): void => {
        const left = relayed.streams.filter((s) => this.isPayloadStream(s)).length;
        const waited = Date.now() - started;
        if (relayed.status !== 'open') return;
        if (left > 0 && waited < this.relayDrainMs && !this.stopped) {
          const t = setTimeout(() => {
            this.drains.delete(t);
            poll();
          }, 1_000);
          t.unref();
          this.drains.add(t);
          return;
        }
        this.emit({ type: 'relay_closed', peer, waitedMs: waited, streamsLeft: left });
        realClose().catch(() => relayed.abort(new HolePunchSetupError('relayed connection did not close')));
      };
      poll();
    });
  }
}

/** A libp2p service: `services: { holePunch: holePunch({ policy }) }`. */
export function holePunch(init: HolePunchInit): (components: HolePunchComponents) => HolePunch {
  return (components) => new HolePunchService(components, init);
}
