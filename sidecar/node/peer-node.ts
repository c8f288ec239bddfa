/**
 * The node as one object: libp2p plus bootstrap keeper, service directory, forwards, exposes and
 * the admin server, started and stopped together. Used by `peertunnel node`, the demo and tests.
 */
import type { PrivateKey } from '@libp2p/interface';
import { Registry } from 'prom-client';
import { SWARM_KEY_NAMES } from '../../contracts/swarm-keys.js';
import { VERSION } from '../../contracts/version.js';
import { AdminServer } from '../admin/admin-server.js';
import { createSidecarMetrics, type SidecarMetrics } from '../admin/metrics.js';
import type { NodeConfig } from '../config/config.js';
import { readSwarmKey } from '../config/swarm-key.js';
import { BoundedDatastore } from '../discovery/dht-limits.js';
import { ServiceDirectory, type ServiceDirectoryInit } from '../discovery/service-directory.js';
import { RelayGuard } from '../nat/relay-guard.js';
import { createNodePortMapper, type PortMapper } from '../port-mapping/port-mapper.js';
import { NodeTrust } from '../trust/node-trust.js';
import { ExposeHandler } from '../tunnel/expose.js';
import { ForwardListener } from '../tunnel/forward.js';
import { watchRefusedStreams } from '../tunnel/refusals.js';
import { StreamLimiter, streamLimits } from '../tunnel/stream-limits.js';
import { BootstrapKeeper } from './bootstrap.js';
import { PathRegistry } from './connection-paths.js';
import { SwarmKeyError } from './errors.js';
import { INBOUND_REFUSALS, InboundGuard } from './inbound-guard.js';
import { createNode, loadIdentity, type PeerTunnelLibp2p } from './libp2p-node.js';
import type { Logger } from './logger.js';
import { type NatStatus, NatWatch } from './nat-watch.js';
import { connectionSnapshot, nodeStatus, notReadyReasons, type PeerNodeStatus } from './node-status.js';
import { PathWatch } from './path-watch.js';
import { SwarmKeyRegistry } from './swarm-keys.js';

// Callers import these from here; they live beside the code that fills them.
export { type NatStatus, REACHABILITY_STATES, type Reachability } from './nat-watch.js';
export type { PeerNodeStatus } from './node-status.js';

export interface PeerNodeOptions {
  config: NodeConfig;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** A registry of the caller's; a new one by default. */
  registry?: Registry;
  /** Start the admin HTTP server. @default true */
  admin?: boolean;
  directory?: ServiceDirectoryInit;
  /** How often the trust and credential files are looked at (sidecar/trust/trust-store.ts). */
  trustPollMs?: number;
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
  readonly trust: NodeTrust;
  private readonly bootstrap: BootstrapKeeper;
  private readonly logger: Logger;
  private readonly pathWatch: PathWatch;
  private readonly nat: NatWatch;
  private draining = false;
  private portMapper?: PortMapper;

  private constructor(
    libp2p: PeerTunnelLibp2p,
    options: PeerNodeOptions,
    inbound: InboundGuard,
    readonly swarmKeys: SwarmKeyRegistry,
  ) {
    const { config, logger } = options;
    this.config = config;
    this.libp2p = libp2p;
    this.logger = logger;
    const registry = options.registry ?? new Registry();
    this.metrics = createSidecarMetrics(
      registry,
      () => connectionSnapshot(this.libp2p.getConnections(), this.paths, this.swarmKeys),
      () => this.notReadyReasons().length === 0,
    );
    this.metrics.buildInfo.set({ version: VERSION, nodejs: process.version, role: config.role }, 1);
    for (const reason of INBOUND_REFUSALS) this.metrics.inboundRefused.inc({ reason }, 0);
    inbound.onRefused((reason, n) => this.metrics.inboundRefused.inc({ reason }, n));
    for (const from of SWARM_KEY_NAMES) this.metrics.swarmKeyFallbacks.inc({ from }, 0);
    swarmKeys.onFallback((from, n) => this.metrics.swarmKeyFallbacks.inc({ from }, n));
    this.pathWatch = new PathWatch(libp2p, this.paths, logger);
    this.nat = new NatWatch({
      libp2p,
      metrics: this.metrics,
      logger,
      publicRanges: config.publicRanges,
      paths: this.paths,
      pathWatch: this.pathWatch,
    });
    const trust = new NodeTrust(config, this.metrics, logger, options.trustPollMs);
    this.trust = trust;
    this.directory = new ServiceDirectory(
      {
        libp2p,
        dht: libp2p.services.dht,
        metrics: this.metrics,
        logger,
        admits: (service, peer) => trust.admits(service, peer),
      },
      options.directory,
    );
    const components = {
      libp2p,
      directory: this.directory,
      paths: this.paths,
      metrics: this.metrics,
      logger,
      ...(trust.open ? {} : { trust }),
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
    const env = options.env ?? process.env;
    const psk = await readSwarmKey(config.swarmKey, env);
    const nextPsk =
      config.nextSwarmKey === undefined
        ? undefined
        : await readSwarmKey(config.nextSwarmKey, env, 'nextSwarmKey');
    if (nextPsk !== undefined && Buffer.from(nextPsk).equals(Buffer.from(psk)))
      throw new SwarmKeyError('nextSwarmKey: the same key as swarmKey (a rollover needs a new one)');
    const swarmKeys = new SwarmKeyRegistry();
    const privateKey = await loadIdentity(config);
    const inbound = new InboundGuard(config.inbound, options.logger);
    const relayGuard =
      config.role === 'relay' ? new RelayGuard(config.limits.reservationsPerAddress) : undefined;
    const datastore = new BoundedDatastore();
    const libp2p = await createNode({
      config,
      psk,
      nextPsk,
      swarmKeys,
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
    const node = new PeerNode(libp2p, options, inbound, swarmKeys);
    if (relayGuard !== undefined) node.nat.watchRelayGuard(relayGuard);
    node.nat.watchDhtRecords(datastore);
    try {
      await node.startParts(privateKey);
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async startParts(privateKey: PrivateKey): Promise<void> {
    // Port mapping (UPnP / NAT-PMP): first, so it sees (and marks) connections before path logs do.
    const { paths, metrics, logger } = this;
    this.portMapper = createNodePortMapper(this.libp2p, this.config, { paths, metrics, logger });
    await this.portMapper.start();
    watchRefusedStreams(this.libp2p, () => this.metrics.streamsRefused.inc({ reason: 'not_exposed' }));
    this.pathWatch.start();
    // Before any connection: the exchange must see each one open.
    await this.trust.start(this.libp2p, privateKey);
    await this.nat.start();
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
    this.nat.stop();
    this.bootstrap.stop();
    this.directory.stop();
    await Promise.allSettled([...this.forwards.map((f) => f.stop()), ...this.exposes.map((e) => e.stop())]);
    await this.admin?.stop();
    await this.portMapper?.stop();
    await this.trust.stop();
    await this.libp2p.stop();
    this.logger.info({ event: 'node_stopped' }, 'node stopped');
  }

  natStatus(): NatStatus {
    return this.nat.natStatus();
  }

  notReadyReasons(): string[] {
    const { draining, forwards, exposes } = this;
    return notReadyReasons({ draining, connections: this.libp2p.getConnections(), forwards, exposes });
  }

  status(): PeerNodeStatus {
    return nodeStatus({
      peerId: this.libp2p.peerId.toString(),
      role: this.config.role,
      notReady: this.notReadyReasons(),
      addresses: this.libp2p.getMultiaddrs().map((a) => a.toString()),
      dht: {
        protocol: this.config.dht.protocol,
        mode: this.libp2p.services.dht.getMode(),
        announced: this.directory.announcedAll,
      },
      bootstrap: this.bootstrap.peers(),
      connections: this.libp2p.getConnections(),
      paths: this.paths,
      swarmKeys: this.swarmKeys,
      hasNextSwarmKey: this.config.nextSwarmKey !== undefined,
      exposes: this.exposes.map((e) => e.status()),
      forwards: this.forwards.map((f) => f.status()),
      nat: this.natStatus(),
      portMapping: this.portMapper?.status(),
      trust: this.trust.status(),
    });
  }
}
