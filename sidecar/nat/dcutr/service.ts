/**
 * The DCUtR service: speaks /libp2p/dcutr (the same messages and roles as go-libp2p and
 * js-libp2p) on relayed connections. When a peer that speaks it is connected through a relay,
 * the inbound side (B) runs rounds (punch.ts, bounded by rounds.ts) and the other side (A)
 * answers on the stream B opens. After an upgrade the relayed connection is closed once its
 * tunnel streams are done (relay-drain.ts); what each round did is told as HolePunchEvents.
 */
import type {
  ComponentLogger,
  Connection,
  Libp2p,
  Logger,
  PeerId,
  PeerStore,
  Stream,
  StreamHandler,
  StreamHandlerOptions,
  Topology,
} from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { isRelayedConnection } from '../../../contracts/relayed.js';
import { HolePunchSetupError } from '../errors.js';
import { type AddressRules, acceptOffer, offerAddresses, unilateralTargets } from './addresses.js';
import { type PunchConnectionManager, PunchDialer } from './dialer.js';
import type { HolePunchEvent, HolePunchListener } from './events.js';
import { messageChannel } from './exchange.js';
import { DCUTR_PROTOCOL } from './protocol.js';
import { initiate, type PunchSteps, respond, upgradeUnilaterally } from './punch.js';
import { RelayDrain } from './relay-drain.js';
import { RoundBook } from './rounds.js';

/** What this service needs of libp2p's components (structural: no internal package import). */
export interface DcutrComponents {
  peerId: PeerId;
  registrar: {
    handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>;
    unhandle(protocol: string): Promise<void>;
    register(protocol: string, topology: Topology): Promise<string>;
    unregister(id: string): void;
  };
  connectionManager: PunchConnectionManager & { getConnections(peer?: PeerId): Connection[] };
  addressManager: { getAddresses(): Multiaddr[] };
  peerStore: Pick<PeerStore, 'get'>;
  transportManager: { dialTransportForMultiaddr(ma: Multiaddr): unknown };
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>;
  logger: ComponentLogger;
}

export interface DcutrServiceInit {
  /** Which IPs are reachable between sites. */
  isPublic(ip: string): boolean;
  /** This node's public endpoints as peers observe them (/ip4|ip6/…/tcp/…, no peer ID). */
  candidates(): Multiaddr[];
  timeoutMs: number;
  tries: number;
  maxFailedRounds: number;
  windowMs: number;
  retryDelayMs: number;
  relayDrainMs: number;
  isPayloadStream(stream: Stream): boolean;
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

export class DcutrService {
  private readonly listeners = new Set<HolePunchListener>();
  private readonly book: RoundBook;
  private readonly drain: RelayDrain;
  private readonly dialer: PunchDialer;
  private readonly steps: PunchSteps;
  private readonly log: Logger;
  private topologyId?: string;
  private started = false;

  constructor(
    private readonly components: DcutrComponents,
    init: DcutrServiceInit,
  ) {
    this.log = components.logger.forComponent('peertunnel:dcutr');
    this.book = new RoundBook({
      maxFailedRounds: init.maxFailedRounds,
      windowMs: init.windowMs,
      retryDelayMs: init.retryDelayMs,
      triesPerRound: init.tries,
    });
    this.drain = new RelayDrain({
      maxWaitMs: init.relayDrainMs,
      isPayloadStream: init.isPayloadStream,
      onClosed: (e) => this.emit({ type: 'relay_closed', ...e }),
    });
    this.dialer = new PunchDialer(components.connectionManager);
    const rules: AddressRules = {
      isPublic: (ip) => init.isPublic(ip),
      canDial: (ma) => components.transportManager.dialTransportForMultiaddr(ma) !== undefined,
    };
    this.steps = {
      tries: init.tries,
      timeoutMs: init.timeoutMs,
      log: this.log,
      offer: () =>
        offerAddresses(components.addressManager.getAddresses(), init.candidates(), components.peerId),
      accept: (addrs, peer) => acceptOffer(addrs, peer, rules),
      openStream: (relayed, deadline) =>
        relayed.newStream([DCUTR_PROTOCOL], { signal: deadline, runOnLimitedConnection: true }),
      channel: messageChannel,
      dial: (peer, addrs, options) => this.dialer.dial(peer, addrs, options),
      shouldStop: (relayed) =>
        !this.started || relayed.status !== 'open' || this.directTo(relayed.remotePeer) !== undefined,
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      unilateralTargets: async (peer) =>
        unilateralTargets(
          (await components.peerStore.get(peer)).addresses.map((a) => a.multiaddr),
          peer,
          rules,
        ),
      // Force: the relayed connection would be returned otherwise.
      dialDirect: (addrs, deadline) =>
        components.connectionManager.openConnection(addrs, { signal: deadline, force: true }),
    };
    this.onOpen = this.onOpen.bind(this);
    this.onStream = this.onStream.bind(this);
  }

  isStarted(): boolean {
    return this.started;
  }

  async start(): Promise<void> {
    if (this.started) return;
    // Before the node's own connection:open listener (services start first): see onOpen.
    this.components.events.addEventListener('connection:open', this.onOpen);
    this.topologyId = await this.components.registrar.register(DCUTR_PROTOCOL, {
      // Identify has run: the peer speaks DCUtR. Relayed connections are limited ones.
      notifyOnLimitedConnection: true,
      onConnect: (_peer, connection) => {
        if (isRelayedConnection(connection) && connection.direction === 'inbound')
          this.startRound(connection);
      },
    });
    await this.components.registrar.handle(DCUTR_PROTOCOL, this.onStream, {
      maxInboundStreams: 1,
      maxOutboundStreams: 1,
      runOnLimitedConnection: true,
    });
    this.started = true;
  }

  async stop(): Promise<void> {
    this.started = false;
    this.components.events.removeEventListener('connection:open', this.onOpen);
    this.book.stop();
    this.drain.stop();
    await this.components.registrar.unhandle(DCUTR_PROTOCOL);
    if (this.topologyId !== undefined) this.components.registrar.unregister(this.topologyId);
    this.topologyId = undefined;
  }

  subscribe(listener: HolePunchListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Peers this node has stopped punching to, until their window passes. */
  gaveUp(): string[] {
    return this.book.gaveUp();
  }

  /** For the dial-responder patch: whether `ma` is dialled by B right now. */
  isResponderDial(ma: Multiaddr): boolean {
    return this.dialer.isResponderDial(ma);
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

  /** An open direct connection to the peer, if there is one. */
  private directTo(peer: PeerId): Connection | undefined {
    return this.components.connectionManager
      .getConnections(peer)
      .find((c) => c.status === 'open' && !isRelayedConnection(c));
  }

  /**
   * A connection a punch dial opened, announced as soon as it opens: this listener runs before
   * the node's own, so the first path the node logs for it is already hole_punched.
   */
  private onOpen(evt: CustomEvent<Connection>): void {
    const c = evt.detail;
    const peer = c.remotePeer.toString();
    if (isRelayedConnection(c) || !this.dialer.isPunching(peer)) return;
    this.dialer.mark(c);
    this.emit({ type: 'upgraded', peer, connection: c, path: 'hole_punched' });
  }

  /** B: one bounded round; schedules the next one while the peer is only relayed. */
  private async round(relayed: Connection): Promise<void> {
    const peer = relayed.remotePeer.toString();
    if (!this.started) return;
    const verdict = this.book.verdict(peer);
    if (verdict === 'busy' || this.directTo(relayed.remotePeer) !== undefined) return;
    if (verdict === 'gave_up') {
      this.emit({ type: 'attempt', peer, result: 'gave_up', ms: 0 });
      return;
    }
    this.book.begin(peer);
    const started = performance.now();
    let made: Connection | undefined;
    let error: unknown;
    try {
      made = await upgradeUnilaterally(relayed, this.steps);
      if (made === undefined) ({ connection: made, error } = await initiate(relayed, this.steps));
    } catch (err) {
      error = err;
    } finally {
      this.book.end(peer);
    }
    if (made !== undefined) this.drain.closeWhenDone(relayed);
    const ms = performance.now() - started;
    if (this.reportUpgrade(relayed.remotePeer, ms, true)) return;
    const failures = this.book.fail(peer);
    this.emit({
      type: 'attempt',
      peer,
      result: 'failure',
      ms,
      ...(error === undefined ? {} : { error: asError(error).message }),
    });
    const delay = this.book.nextDelay(failures);
    if (delay !== undefined && relayed.status === 'open' && this.started)
      this.book.retry(peer, delay, () => this.startRound(relayed));
  }

  /** A round in the background: its own failures are events, anything else only a debug line. */
  private startRound(relayed: Connection): void {
    this.round(relayed).catch((err: unknown) => {
      this.log.error('hole punch round with %p ended abnormally - %e', relayed.remotePeer, err);
    });
  }

  /** A: answers B's CONNECT and dials at its SYNC, unless B failed too often lately. */
  private async onStream(stream: Stream, relayed: Connection): Promise<void> {
    const peer = relayed.remotePeer.toString();
    if (this.book.answerRefused(peer)) {
      this.emit({ type: 'attempt', peer, result: 'gave_up', ms: 0 });
      stream.abort(new HolePunchSetupError(`too many failed hole punches with ${peer}`));
      return;
    }
    const started = performance.now();
    let made: Connection;
    try {
      made = await respond(stream, relayed, this.steps);
    } catch (err) {
      this.book.fail(peer);
      this.log('answering a hole punch from %p failed - %e', relayed.remotePeer, err);
      stream.abort(asError(err));
      return;
    }
    this.log('hole punch to %p answered via %a', relayed.remotePeer, made.remoteAddr);
    this.drain.closeWhenDone(relayed);
    this.reportUpgrade(relayed.remotePeer, performance.now() - started, false);
  }

  /** After a round or an answer: reports the direct connection it left, if any. */
  private reportUpgrade(peerId: PeerId, ms: number, count: boolean): boolean {
    const direct = this.directTo(peerId);
    if (direct === undefined) return false;
    const peer = peerId.toString();
    if (count) this.emit({ type: 'attempt', peer, result: 'success', ms });
    this.book.forget(peer);
    this.emit({
      type: 'upgraded',
      peer,
      connection: direct,
      path: this.dialer.wasPunched(direct) ? 'hole_punched' : 'direct',
    });
    return true;
  }
}
