/** Which path each connected peer's new streams take: logs `path_changed` and `peer_disconnected`. */
import type { Connection, PeerId } from '@libp2p/interface';
import type { PathKind } from '../admin/metrics.js';
import { bestConnection, type PathRegistry } from './connection-paths.js';
import type { PeerTunnelLibp2p } from './libp2p-node.js';
import type { Logger } from './logger.js';

export class PathWatch {
  /** The last path logged per peer, so a log line means a change. */
  private readonly pathByPeer = new Map<string, PathKind>();

  constructor(
    private readonly libp2p: PeerTunnelLibp2p,
    private readonly paths: PathRegistry,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.libp2p.addEventListener('connection:open', (evt) => this.onConnectionChange(evt.detail, 'open'));
    this.libp2p.addEventListener('connection:close', (evt) => this.onConnectionChange(evt.detail, 'close'));
  }

  /** Logs `path_changed` when the path new streams to a peer take (its best connection) changes. */
  update(peerId: PeerId | undefined): void {
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

  private onConnectionChange(connection: Connection, change: 'open' | 'close'): void {
    if (change === 'close' && this.libp2p.getConnections(connection.remotePeer).length === 0) {
      const peer = connection.remotePeer.toString();
      this.pathByPeer.delete(peer);
      this.logger.info({ event: 'peer_disconnected', peer }, 'peer disconnected');
      return;
    }
    this.update(connection.remotePeer);
  }
}
