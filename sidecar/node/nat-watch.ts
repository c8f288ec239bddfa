/**
 * How the node stands towards NATs: watches hole punching, relay reservations, the relay guard and
 * refused DHT records, keeps the NAT gauges, and answers `natStatus()` for /status.
 */
import { isCircuitAddress } from '../../contracts/relayed.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { NodeConfig } from '../config/config.js';
import type { BoundedDatastore } from '../discovery/dht-limits.js';
import { AddressPolicy } from '../nat/address-policy.js';
import type { HolePunchEvent } from '../nat/hole-punch.js';
import type { RelayClientEvent, RelayReservationStatus } from '../nat/relay-client.js';
import type { RelayGuard } from '../nat/relay-guard.js';
import { meterRelayedBytes } from '../nat/relay-meter.js';
import { detectReusePort, type ReusePortMethod } from '../nat/reuseport-tcp.js';
import type { PathRegistry } from './connection-paths.js';
import { type PeerTunnelLibp2p, RELAY_STREAM_LIMIT } from './libp2p-node.js';
import type { Logger } from './logger.js';
import type { PathWatch } from './path-watch.js';

/** How this node stands towards NATs, for /status. */
export type Reachability = 'public' | 'private' | 'unknown';
export const REACHABILITY_STATES: readonly Reachability[] = ['public', 'private', 'unknown'];

export interface NatStatus {
  /** How TCP dials get the listening port as their source port ('off': no hole punching). */
  reusePort: ReusePortMethod;
  reachability: Reachability;
  holePunch: boolean;
  /** This node's public address:port as peers observe it (the NAT's mapping), never announced. */
  observedCandidates: string[];
  /** Trusted observers disagree on the port: the NAT maps per destination, punching cannot work. */
  symmetricNat: boolean;
  /** Peers this node stopped hole punching to (their failures reached the bound). */
  holePunchGaveUp: string[];
  relays: RelayReservationStatus[];
  /** On a relay: reservations it serves. */
  serving?: number;
}

export interface NatWatchInit {
  libp2p: PeerTunnelLibp2p;
  metrics: SidecarMetrics;
  logger: Logger;
  publicRanges: NodeConfig['publicRanges'];
  /** Marked when a hole punch upgrades a connection. */
  paths: PathRegistry;
  /** Told when a hole punch changes a peer's path. */
  pathWatch: PathWatch;
}

export class NatWatch {
  private readonly libp2p: PeerTunnelLibp2p;
  private readonly metrics: SidecarMetrics;
  private readonly logger: Logger;
  private readonly paths: PathRegistry;
  private readonly pathWatch: PathWatch;
  private readonly policy: AddressPolicy;
  private readonly reusePort: ReusePortMethod;
  private readonly unsubscribe: Array<() => void> = [];
  private timer?: NodeJS.Timeout;

  constructor(init: NatWatchInit) {
    this.libp2p = init.libp2p;
    this.metrics = init.metrics;
    this.logger = init.logger;
    this.paths = init.paths;
    this.pathWatch = init.pathWatch;
    this.policy = new AddressPolicy(init.publicRanges);
    this.reusePort = detectReusePort().method;
  }

  /** Hole punching, relay reservations and relaying: metrics, paths and logs. */
  async start(): Promise<void> {
    const { holePunch, relayClient, relay } = this.libp2p.services;
    if (holePunch !== undefined) this.unsubscribe.push(holePunch.subscribe((e) => this.onHolePunch(e)));
    if (relayClient !== undefined) this.unsubscribe.push(relayClient.subscribe((e) => this.onRelayClient(e)));
    if (relay !== undefined)
      await meterRelayedBytes(
        this.libp2p,
        { maxInboundHopStreams: RELAY_STREAM_LIMIT, maxOutboundHopStreams: RELAY_STREAM_LIMIT },
        (n) => this.metrics.relayedBytes.inc(n),
      );
    this.updateGauges();
    this.timer = setInterval(() => this.updateGauges(), 1_000);
    this.timer.unref();
  }

  /** Undoes `start()` and every `watch…()`; safe to call when they never ran. */
  stop(): void {
    clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
  }

  watchDhtRecords(datastore: BoundedDatastore): void {
    let lastLog = 0;
    let unlogged = 0;
    this.unsubscribe.push(
      datastore.onRefused((reason, peer) => {
        this.metrics.dhtRecordsRefused.inc({ reason });
        const now = Date.now();
        if (now - lastLog < 1_000) {
          unlogged++;
          return;
        }
        this.logger.warn(
          { event: 'dht_record_refused', peer, reason, suppressed: unlogged },
          'DHT provider record refused: limit reached',
        );
        lastLog = now;
        unlogged = 0;
      }),
    );
  }

  watchRelayGuard(guard: RelayGuard): void {
    let lastLog = 0;
    let unlogged = 0;
    this.unsubscribe.push(
      guard.subscribe((e) => {
        if (e.type === 'dropped') {
          this.metrics.relayReservationsDropped.inc({ reason: e.reason });
          this.logger.debug(
            { event: 'relay_reservation_dropped', peer: e.peer, reason: e.reason },
            'reservation dropped',
          );
          return;
        }
        this.metrics.relayReservationsRefused.inc({ reason: e.reason });
        // Throw-away identities make thousands of these: one line a second, with a count.
        const now = Date.now();
        if (now - lastLog < 1_000) {
          unlogged++;
          return;
        }
        this.logger.warn(
          {
            event: 'relay_reservation_refused',
            peer: e.peer,
            ip: e.ip,
            reason: e.reason,
            suppressed: unlogged,
          },
          'relay reservation refused: that address holds as many as one address may',
        );
        lastLog = now;
        unlogged = 0;
      }),
      () => guard.detach(),
    );
  }

  reachability(): Reachability {
    const addrs = this.libp2p.getMultiaddrs().map((a) => a.toString());
    if (addrs.some((a) => !isCircuitAddress(a) && this.policy.isPublicMultiaddr(a))) return 'public';
    const hp = this.libp2p.services.holePunch;
    if (hp?.observed.observed === true || addrs.some(isCircuitAddress)) return 'private';
    return 'unknown';
  }

  natStatus(): NatStatus {
    const hp = this.libp2p.services.holePunch?.status();
    const relay = this.libp2p.services.relay;
    return {
      reusePort: this.reusePort,
      reachability: this.reachability(),
      holePunch: hp !== undefined,
      observedCandidates: hp?.candidates ?? [],
      symmetricNat: hp?.symmetricNat ?? false,
      holePunchGaveUp: hp?.gaveUp ?? [],
      relays: this.libp2p.services.relayClient?.status() ?? [],
      ...(relay === undefined ? {} : { serving: relay.reservations.size }),
    };
  }

  private onHolePunch(e: HolePunchEvent): void {
    switch (e.type) {
      case 'attempt':
        this.metrics.holePunchAttempts.inc({ result: e.result });
        this.logger.info(
          {
            event: 'holepunch_attempt',
            peer: e.peer,
            result: e.result,
            ms: Math.round(e.ms),
            ...(e.error === undefined ? {} : { err: e.error }),
          },
          'hole punch round',
        );
        break;
      case 'upgraded':
        this.paths.mark(e.connection, e.path);
        this.pathWatch.update(e.connection.remotePeer);
        break;
      case 'relay_closed':
        this.logger.info(
          {
            event: 'relayed_connection_closed',
            peer: e.peer,
            waitedMs: e.waitedMs,
            streamsLeft: e.streamsLeft,
          },
          'relayed connection closed after the upgrade',
        );
        break;
    }
  }

  private onRelayClient(e: RelayClientEvent): void {
    if (e.type === 'reserved')
      this.logger.info(
        { event: 'relay_reserved', relay: e.relay, addresses: e.addresses, afterMs: e.afterMs },
        'relay reservation made',
      );
    else if (e.type === 'lost')
      this.logger.warn({ event: 'relay_reservation_lost', relay: e.relay }, 'relay reservation lost');
    else
      this.logger.warn(
        { event: 'relay_reserve_failed', relay: e.relay, attempt: e.attempt, err: e.error },
        'relay reservation failed, retrying',
      );
    this.updateGauges();
  }

  private updateGauges(): void {
    const r = this.reachability();
    for (const state of REACHABILITY_STATES) this.metrics.reachability.set({ state }, state === r ? 1 : 0);
    this.metrics.relayReservations.set({ state: 'active' }, this.libp2p.services.relayClient?.active() ?? 0);
    const relay = this.libp2p.services.relay;
    if (relay !== undefined)
      this.metrics.relayReservations.set({ state: 'serving' }, relay.reservations.size);
  }
}
