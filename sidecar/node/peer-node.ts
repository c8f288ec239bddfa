/**
 * The node as one object: libp2p plus bootstrap keeper, service directory, forwards, exposes and
 * the admin server, started and stopped together. Used by `peertunnel node`, the demo and tests.
 */
import { Registry } from 'prom-client';
import { isCircuitAddress } from '../../contracts/relayed.js';
import type { SidecarStatus } from '../../contracts/sidecar-status.js';
import { VERSION } from '../../contracts/version.js';
import { AdminServer } from '../admin/admin-server.js';
import { createSidecarMetrics, PATH_KINDS, type PathKind, type SidecarMetrics } from '../admin/metrics.js';
import type { NodeConfig } from '../config/config.js';
import { readSwarmKey } from '../config/swarm-key.js';
import { BoundedDatastore } from '../discovery/dht-limits.js';
import { ServiceDirectory, type ServiceDirectoryInit } from '../discovery/service-directory.js';
import { AddressPolicy } from '../nat/address-policy.js';
import type { HolePunchEvent } from '../nat/hole-punch.js';
import type { RelayClientEvent, RelayReservationStatus } from '../nat/relay-client.js';
import { RelayGuard } from '../nat/relay-guard.js';
import { meterRelayedBytes } from '../nat/relay-meter.js';
import { detectReusePort, type ReusePortMethod } from '../nat/reuseport-tcp.js';
import {
  createNodePortMapper,
  type PortMapper,
  type PortMappingStatus,
} from '../port-mapping/port-mapper.js';
import { ExposeHandler } from '../tunnel/expose.js';
import { ForwardListener } from '../tunnel/forward.js';
import { watchRefusedStreams } from '../tunnel/refusals.js';
import { StreamLimiter, streamLimits } from '../tunnel/stream-limits.js';
import { BootstrapKeeper } from './bootstrap.js';
import { bestConnection, PathRegistry } from './connection-paths.js';
import { INBOUND_REFUSALS, InboundGuard } from './inbound-guard.js';
import { createNode, loadIdentity, type PeerTunnelLibp2p, RELAY_STREAM_LIMIT } from './libp2p-node.js';
import type { Logger } from './logger.js';

export interface PeerNodeOptions {
  config: NodeConfig;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** A registry of the caller's; a new one by default. */
  registry?: Registry;
  /** Start the admin HTTP server. @default true */
  admin?: boolean;
  directory?: ServiceDirectoryInit;
}

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

/** /status: the contract the operator reads, and what only people read. */
export interface PeerNodeStatus extends SidecarStatus {
  role: NodeConfig['role'];
  version: string;
  notReady: string[];
  addresses: string[];
  dht: { protocol: string; mode: string; announced: boolean };
  bootstrap: string[];
  peers: Array<{ peer: string; path: PathKind; remoteAddr: string; direction: string; streams: number }>;
  nat: NatStatus;
  portMapping?: PortMappingStatus;
}

export class PeerNode {
  readonly config: NodeConfig;
  readonly libp2p: PeerTunnelLibp2p;
  readonly metrics: SidecarMetrics;
  readonly paths = new PathRegistry();
  readonly directory: ServiceDirectory;
  readonly forwards: ForwardListener[];
  readonly exposes: ExposeHandler[];
  readonly admin?: AdminServer;
  private readonly bootstrap: BootstrapKeeper;
  private readonly logger: Logger;
  private readonly pathByPeer = new Map<string, PathKind>();
  private readonly policy: AddressPolicy;
  private readonly reusePort: ReusePortMethod;
  private readonly unsubscribe: Array<() => void> = [];
  private natTimer?: NodeJS.Timeout;
  private draining = false;
  private portMapper?: PortMapper;

  private constructor(libp2p: PeerTunnelLibp2p, options: PeerNodeOptions, inbound: InboundGuard) {
    const { config, logger } = options;
    this.config = config;
    this.libp2p = libp2p;
    this.logger = logger;
    this.policy = new AddressPolicy(config.publicRanges);
    this.reusePort = detectReusePort().method;
    const registry = options.registry ?? new Registry();
    this.metrics = createSidecarMetrics(
      registry,
      () => this.connectionSnapshot(),
      () => this.notReadyReasons().length === 0,
    );
    this.metrics.buildInfo.set({ version: VERSION, nodejs: process.version, role: config.role }, 1);
    for (const reason of INBOUND_REFUSALS) this.metrics.inboundRefused.inc({ reason }, 0);
    inbound.onRefused((reason, n) => this.metrics.inboundRefused.inc({ reason }, n));
    this.directory = new ServiceDirectory(
      { libp2p, dht: libp2p.services.dht, metrics: this.metrics, logger },
      options.directory,
    );
    const components = {
      libp2p,
      directory: this.directory,
      paths: this.paths,
      metrics: this.metrics,
      logger,
    };
    this.forwards = config.forward.map((f) => new ForwardListener(components, f));
    const limiter = new StreamLimiter(streamLimits(config.limits));
    this.exposes = config.expose.map(
      (e) => new ExposeHandler({ ...components, limiter, directory: this.directory }, e),
    );
    this.bootstrap = new BootstrapKeeper(libp2p, config.bootstrap, logger);
    if (options.admin !== false) {
      this.admin = new AdminServer(
        this,
        {
          listen: config.admin.listen,
          statusTokenSha256: config.admin.statusTokenSha256,
          onRefused: (reason) => this.metrics.adminRefused.inc({ reason }),
        },
        logger,
      );
    }
  }

  get registry(): Registry {
    return this.metrics.registry;
  }

  /** Builds and starts a node; on failure everything started so far is stopped again. */
  static async start(options: PeerNodeOptions): Promise<PeerNode> {
    const { config } = options;
    const psk = await readSwarmKey(config.swarmKey, options.env ?? process.env);
    const privateKey = await loadIdentity(config);
    const inbound = new InboundGuard(config.inbound, options.logger);
    const relayGuard =
      config.role === 'relay' ? new RelayGuard(config.limits.reservationsPerAddress) : undefined;
    const datastore = new BoundedDatastore();
    const libp2p = await createNode({
      config,
      psk,
      privateKey,
      inbound,
      datastore,
      ...(relayGuard === undefined ? {} : { relayGuard }),
      onReusePortUnavailable: (err) =>
        options.logger.warn(
          { event: 'reuseport_unavailable', err: err.message },
          'TCP dials cannot use the listening port: hole punching is off',
        ),
    });
    const node = new PeerNode(libp2p, options, inbound);
    if (relayGuard !== undefined) node.watchRelayGuard(relayGuard);
    node.watchDhtRecords(datastore);
    try {
      await node.startParts();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async startParts(): Promise<void> {
    // Port mapping (UPnP / NAT-PMP): first, so it sees (and marks) connections before path logs do.
    const { paths, metrics, logger } = this;
    this.portMapper = createNodePortMapper(this.libp2p, this.config, { paths, metrics, logger });
    await this.portMapper.start();
    watchRefusedStreams(this.libp2p, () => this.metrics.streamsRefused.inc({ reason: 'not_exposed' }));
    this.libp2p.addEventListener('connection:open', (evt) => this.onConnectionChange(evt.detail, 'open'));
    this.libp2p.addEventListener('connection:close', (evt) => this.onConnectionChange(evt.detail, 'close'));
    await this.watchNat();
    for (const e of this.exposes) await e.start();
    for (const f of this.forwards) await f.start();
    await this.directory.start(
      this.exposes.map((e) => e.config.name),
      this.forwards.map((f) => f.config.name),
    );
    this.bootstrap.start();
    await this.admin?.start();
    this.logger.info(
      {
        event: 'node_started',
        peer: this.libp2p.peerId.toString(),
        role: this.config.role,
        addresses: this.libp2p.getMultiaddrs().map((a) => a.toString()),
      },
      'node started',
    );
  }

  /**
   * The first part of a graceful stop (SIGTERM): stop announcing (no DHT re-provide; the exposed
   * protocols unhandled, which identify pushes to peers), stop accepting (forward listeners
   * closed, new inbound streams refused), then wait until the open connections finish or
   * `drainMs` passes. Returns how many were still open. `stop()` closes whatever is left.
   */
  async drain(drainMs: number): Promise<{ open: number; ms: number }> {
    const started = performance.now();
    const open = () =>
      this.forwards.reduce((n, f) => n + f.active, 0) + this.exposes.reduce((n, e) => n + e.active, 0);
    this.draining = true;
    this.logger.info({ event: 'node_draining', open: open(), drainMs }, 'draining: no new connections');
    this.bootstrap.stop();
    this.directory.stop();
    for (const f of this.forwards) f.stopAccepting();
    await Promise.allSettled(this.exposes.map((e) => e.stopAccepting()));
    const deadline = started + drainMs;
    while (open() > 0 && performance.now() < deadline) {
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(100, Math.max(1, deadline - performance.now()))),
      );
    }
    const result = { open: open(), ms: Math.round(performance.now() - started) };
    this.logger.info(
      { event: 'node_drained', ...result },
      result.open > 0 ? 'drain bound reached' : 'drained',
    );
    return result;
  }

  async stop(): Promise<void> {
    clearInterval(this.natTimer);
    for (const u of this.unsubscribe) u();
    this.bootstrap.stop();
    this.directory.stop();
    await Promise.allSettled([...this.forwards.map((f) => f.stop()), ...this.exposes.map((e) => e.stop())]);
    await this.admin?.stop();
    await this.portMapper?.stop();
    await this.libp2p.stop();
    this.logger.info({ event: 'node_stopped' }, 'node stopped');
  }

  private onConnectionChange(
    connection: Parameters<PathRegistry['pathOf']>[0],
    change: 'open' | 'close',
  ): void {
    if (change === 'close' && this.libp2p.getConnections(connection.remotePeer).length === 0) {
      const peer = connection.remotePeer.toString();
      this.pathByPeer.delete(peer);
      this.logger.info({ event: 'peer_disconnected', peer }, 'peer disconnected');
      return;
    }
    this.updatePath(connection.remotePeer);
  }

  /** Logs `path_changed` when the path new streams to a peer take (its best connection) changes. */
  private updatePath(peerId: Parameters<PeerTunnelLibp2p['getConnections']>[0]): void {
    const best = bestConnection(this.libp2p.getConnections(peerId));
    if (best === undefined || peerId === undefined) return;
    const peer = peerId.toString();
    const path = this.paths.pathOf(best);
    const before = this.pathByPeer.get(peer);
    this.pathByPeer.set(peer, path);
    if (before !== path)
      this.logger.info(
        { event: 'path_changed', peer, path, before: before ?? null, remoteAddr: best.remoteAddr.toString() },
        'path to peer',
      );
  }

  /** Hole punching, relay reservations and relaying: metrics, paths and logs. */
  private async watchNat(): Promise<void> {
    const { holePunch, relayClient, relay } = this.libp2p.services;
    if (holePunch !== undefined) this.unsubscribe.push(holePunch.subscribe((e) => this.onHolePunch(e)));
    if (relayClient !== undefined) this.unsubscribe.push(relayClient.subscribe((e) => this.onRelayClient(e)));
    if (relay !== undefined)
      await meterRelayedBytes(
        this.libp2p,
        { maxInboundHopStreams: RELAY_STREAM_LIMIT, maxOutboundHopStreams: RELAY_STREAM_LIMIT },
        (n) => this.metrics.relayedBytes.inc(n),
      );
    this.updateNatGauges();
    this.natTimer = setInterval(() => this.updateNatGauges(), 1_000);
    this.natTimer.unref();
  }

  private watchDhtRecords(datastore: BoundedDatastore): void {
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

  private watchRelayGuard(guard: RelayGuard): void {
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

  private onHolePunch(e: HolePunchEvent): void {
    switch (e.type) {
      case 'attempt':
        this.metrics.holePunchAttempts.inc({ result: e.result });
        this.logger.info(
          { event: 'holepunch_attempt', peer: e.peer, result: e.result, ms: Math.round(e.ms) },
          'hole punch round',
        );
        break;
      case 'upgraded':
        this.paths.mark(e.connection, e.path);
        this.updatePath(e.connection.remotePeer);
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
    this.updateNatGauges();
  }

  private reachability(): Reachability {
    const addrs = this.libp2p.getMultiaddrs().map((a) => a.toString());
    if (addrs.some((a) => !isCircuitAddress(a) && this.policy.isPublicMultiaddr(a))) return 'public';
    const hp = this.libp2p.services.holePunch;
    if (hp?.observed.observed === true || addrs.some(isCircuitAddress)) return 'private';
    return 'unknown';
  }

  private updateNatGauges(): void {
    const r = this.reachability();
    for (const state of REACHABILITY_STATES) this.metrics.reachability.set({ state }, state === r ? 1 : 0);
    this.metrics.relayReservations.set({ state: 'active' }, this.libp2p.services.relayClient?.active() ?? 0);
    const relay = this.libp2p.services.relay;
    if (relay !== undefined)
      this.metrics.relayReservations.set({ state: 'serving' }, relay.reservations.size);
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

  private connectionSnapshot(): { peers: number; byPath: Record<PathKind, number> } {
    const byPath = Object.fromEntries(PATH_KINDS.map((p) => [p, 0])) as Record<PathKind, number>;
    const peers = new Set<string>();
    for (const c of this.libp2p.getConnections()) {
      if (c.status !== 'open') continue;
      byPath[this.paths.pathOf(c)]++;
      peers.add(c.remotePeer.toString());
    }
    return { peers: peers.size, byPath };
  }

  notReadyReasons(): string[] {
    const reasons: string[] = [];
    if (this.draining) reasons.push('shutting down: draining open connections');
    if (this.libp2p.getConnections().every((c) => c.status !== 'open'))
      reasons.push('no connection to any network peer');
    for (const f of this.forwards)
      if (!f.listening && !this.draining) reasons.push(`forward ${f.config.name} is not listening`);
    for (const e of this.exposes)
      if (!e.targetUp) reasons.push(`expose ${e.config.name}: its target refuses connections`);
    return reasons;
  }

  status(): PeerNodeStatus {
    const notReady = this.notReadyReasons();
    return {
      peerId: this.libp2p.peerId.toString(),
      role: this.config.role,
      version: VERSION,
      ready: notReady.length === 0,
      notReady,
      addresses: this.libp2p.getMultiaddrs().map((a) => a.toString()),
      dht: {
        protocol: this.config.dht.protocol,
        mode: this.libp2p.services.dht.getMode(),
        announced: this.directory.announcedAll,
      },
      bootstrap: this.bootstrap.peers(),
      peers: this.libp2p
        .getConnections()
        .filter((c) => c.status === 'open')
        .map((c) => ({
          peer: c.remotePeer.toString(),
          path: this.paths.pathOf(c),
          remoteAddr: c.remoteAddr.toString(),
          direction: c.direction,
          streams: c.streams.length,
        })),
      exposes: this.exposes.map((e) => e.status()),
      forwards: this.forwards.map((f) => f.status()),
      nat: this.natStatus(),
      portMapping: this.portMapper?.status(),
    };
  }
}
