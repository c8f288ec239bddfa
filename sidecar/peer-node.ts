/**
 * The node as one object: libp2p plus bootstrap keeper, service directory, forwards, exposes and
 * the admin server, started and stopped together. Used by `peertunnel node`, the demo and tests.
 */
import { Registry } from 'prom-client';
import { AdminServer } from './admin.js';
import { BootstrapKeeper } from './bootstrap.js';
import type { NodeConfig } from './config.js';
import { ServiceDirectory, type ServiceDirectoryInit } from './discovery.js';
import { ExposeHandler, type ExposeStatus } from './expose.js';
import { ForwardListener, type ForwardStatus } from './forward.js';
import type { Logger } from './logger.js';
import { createSidecarMetrics, PATH_KINDS, type PathKind, type SidecarMetrics } from './metrics.js';
import { createNode, loadIdentity, type PeerTunnelLibp2p } from './node.js';
import { PathRegistry } from './paths.js';
import { watchRefusedStreams } from './refusals.js';
import { readSwarmKey } from './swarm-key.js';

export const VERSION = '0.1.0';

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

export interface PeerNodeStatus {
  peerId: string;
  role: NodeConfig['role'];
  version: string;
  ready: boolean;
  notReady: string[];
  addresses: string[];
  dht: { protocol: string; mode: string; announced: boolean };
  bootstrap: string[];
  peers: Array<{ peer: string; path: PathKind; remoteAddr: string; direction: string; streams: number }>;
  exposes: ExposeStatus[];
  forwards: ForwardStatus[];
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
  private readonly pathByConnection = new Map<string, PathKind>();

  private constructor(libp2p: PeerTunnelLibp2p, options: PeerNodeOptions) {
    const { config, logger } = options;
    this.config = config;
    this.libp2p = libp2p;
    this.logger = logger;
    const registry = options.registry ?? new Registry();
    this.metrics = createSidecarMetrics(registry, () => this.connectionSnapshot());
    this.metrics.buildInfo.set({ version: VERSION, nodejs: process.version, role: config.role }, 1);
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
    this.exposes = config.expose.map((e) => new ExposeHandler(components, e));
    this.bootstrap = new BootstrapKeeper(libp2p, config.bootstrap, logger);
    if (options.admin !== false) this.admin = new AdminServer(this, config.admin.listen, logger);
  }

  get registry(): Registry {
    return this.metrics.registry;
  }

  /** Builds and starts a node; on failure everything started so far is stopped again. */
  static async start(options: PeerNodeOptions): Promise<PeerNode> {
    const { config } = options;
    const psk = await readSwarmKey(config.swarmKey, options.env ?? process.env);
    const privateKey = await loadIdentity(config);
    const libp2p = await createNode({ config, psk, privateKey });
    const node = new PeerNode(libp2p, options);
    try {
      await node.startParts();
    } catch (err) {
      await node.stop();
      throw err;
    }
    return node;
  }

  private async startParts(): Promise<void> {
    watchRefusedStreams(this.libp2p, () => this.metrics.streamsRefused.inc({ reason: 'not_exposed' }));
    this.libp2p.addEventListener('connection:open', (evt) => this.onConnectionChange(evt.detail, 'open'));
    this.libp2p.addEventListener('connection:close', (evt) => this.onConnectionChange(evt.detail, 'close'));
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

  async stop(): Promise<void> {
    this.bootstrap.stop();
    this.directory.stop();
    await Promise.allSettled([...this.forwards.map((f) => f.stop()), ...this.exposes.map((e) => e.stop())]);
    await this.admin?.stop();
    await this.libp2p.stop();
    this.logger.info({ event: 'node_stopped' }, 'node stopped');
  }

  private onConnectionChange(
    connection: Parameters<PathRegistry['pathOf']>[0],
    change: 'open' | 'close',
  ): void {
    const peer = connection.remotePeer.toString();
    const path = this.paths.pathOf(connection);
    if (change === 'open') {
      const before = this.pathByConnection.get(peer);
      this.pathByConnection.set(peer, path);
      if (before !== path)
        this.logger.info({ event: 'path_changed', peer, path, before: before ?? null }, 'path to peer');
    } else if (this.libp2p.getConnections(connection.remotePeer).length === 0) {
      this.pathByConnection.delete(peer);
      this.logger.info({ event: 'peer_disconnected', peer }, 'peer disconnected');
    }
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
    if (this.libp2p.getConnections().every((c) => c.status !== 'open'))
      reasons.push('no connection to any network peer');
    for (const f of this.forwards)
      if (!f.listening) reasons.push(`forward ${f.config.name} is not listening`);
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
    };
  }
}
