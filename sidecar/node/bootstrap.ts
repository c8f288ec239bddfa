/**
 * Keeps this node connected to the network's bootstrap/relay peers: dial each, and dial again
 * with capped backoff whenever the connection is lost. (libp2p's keep-alive reconnect gives up
 * after a few tries and drops the tag; a sidecar must never give up on its network.)
 */
import type { Libp2p, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import type { Logger } from './logger.js';

export interface BootstrapKeeperInit {
  /** @default 500 */
  minBackoffMs?: number;
  /** @default 15000 */
  maxBackoffMs?: number;
  /** @default 5000 */
  dialTimeoutMs?: number;
}

interface Target {
  peerId: PeerId;
  addr: Multiaddr;
  failures: number;
  timer?: NodeJS.Timeout;
  dialing: boolean;
}

export class BootstrapKeeper {
  private readonly targets = new Map<string, Target>();
  private stopped = false;
  private readonly init: Required<BootstrapKeeperInit>;

  constructor(
    private readonly libp2p: Pick<
      Libp2p,
      'dial' | 'getConnections' | 'addEventListener' | 'removeEventListener'
    >,
    addrs: readonly string[],
    private readonly logger: Logger,
    init: BootstrapKeeperInit = {},
  ) {
    this.init = {
      minBackoffMs: init.minBackoffMs ?? 500,
      maxBackoffMs: init.maxBackoffMs ?? 15_000,
      dialTimeoutMs: init.dialTimeoutMs ?? 5_000,
    };
    for (const a of addrs) {
      const addr = multiaddr(a);
      const id = addr.getComponents().findLast((c) => c.name === 'p2p')?.value;
      if (id === undefined) continue;
      this.targets.set(id, { peerId: peerIdFromString(id), addr, failures: 0, dialing: false });
    }
    this.onDisconnect = this.onDisconnect.bind(this);
  }

  start(): void {
    this.libp2p.addEventListener('peer:disconnect', this.onDisconnect);
    for (const t of this.targets.values()) this.dial(t);
  }

  stop(): void {
    this.stopped = true;
    this.libp2p.removeEventListener('peer:disconnect', this.onDisconnect);
    for (const t of this.targets.values()) clearTimeout(t.timer);
  }

  /** Peer IDs of the bootstrap peers, for /status. */
  peers(): string[] {
    return [...this.targets.keys()];
  }

  private onDisconnect(evt: CustomEvent<PeerId>): void {
    const t = this.targets.get(evt.detail.toString());
    if (t !== undefined && !this.stopped) {
      this.logger.warn(
        { event: 'bootstrap_disconnected', peer: t.peerId.toString() },
        'lost connection to a bootstrap peer',
      );
      this.retry(t);
    }
  }

  private retry(t: Target): void {
    if (this.stopped || t.timer !== undefined) return;
    const delay = Math.min(this.init.maxBackoffMs, this.init.minBackoffMs * 2 ** Math.min(t.failures, 10));
    t.timer = setTimeout(() => {
      t.timer = undefined;
      this.dial(t);
    }, delay);
    t.timer.unref();
  }

  private dial(t: Target): void {
    if (this.stopped || t.dialing) return;
    if (this.libp2p.getConnections(t.peerId).some((c) => c.status === 'open')) return;
    t.dialing = true;
    this.libp2p
      .dial(t.addr, { signal: AbortSignal.timeout(this.init.dialTimeoutMs) })
      .then(() => {
        if (t.failures > 0)
          this.logger.info(
            { event: 'bootstrap_connected', peer: t.peerId.toString() },
            'bootstrap peer reached',
          );
        t.failures = 0;
      })
      .catch((err: unknown) => {
        t.failures++;
        this.logger.warn(
          {
            event: 'bootstrap_dial_failed',
            peer: t.peerId.toString(),
            attempt: t.failures,
            err: err instanceof Error ? err.message : String(err),
          },
          'cannot reach a bootstrap peer, retrying',
        );
        this.retry(t);
      })
      .finally(() => {
        t.dialing = false;
      });
  }
}
