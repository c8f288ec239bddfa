/**
 * Tunnel streams open now, with the peer and name each was allowed for, looked at again every
 * SWEEP_MS: a stream whose peer no longer passes the check (its credential expired without a
 * renewal, or its cluster left the trusted list) is reset. So open connections of a revoked
 * workload end within one credential lifetime, and sooner when its cluster is removed.
 */
import type { Stream } from '@libp2p/interface';
import type { CredentialRefusal } from '../../contracts/credential.js';
import type { Side, SidecarMetrics } from '../admin/metrics.js';
import type { Logger } from '../node/logger.js';

export const SWEEP_MS = 1_000;

interface Open {
  side: Side;
  peer: string;
  service: string;
}

export class OpenTunnels {
  private readonly open = new Map<Stream, Open>();
  private timer?: NodeJS.Timeout;

  constructor(
    /** Why the peer may no longer hold this stream; undefined while it may. */
    private readonly check: (o: Open) => CredentialRefusal | undefined,
    private readonly metrics: SidecarMetrics,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.sweep(), SWEEP_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.open.clear();
  }

  /** Watches a stream until it closes. */
  track(stream: Stream, side: Side, peer: string, service: string): void {
    this.open.set(stream, { side, peer, service });
    stream.addEventListener('close', () => this.open.delete(stream), { once: true });
  }

  get size(): number {
    return this.open.size;
  }

  /** Resets the streams whose peers no longer pass; returns how many. */
  sweep(): number {
    const ended = new Map<string, { o: Open; reason: CredentialRefusal; streams: number }>();
    for (const [stream, o] of this.open) {
      const reason = this.check(o);
      if (reason === undefined) continue;
      this.open.delete(stream);
      stream.abort(new Error(`peer no longer trusted: ${reason}`));
      this.metrics.trustRevoked.inc({ side: o.side, reason });
      const key = `${o.side} ${o.peer} ${o.service}`;
      const seen = ended.get(key);
      if (seen === undefined) ended.set(key, { o, reason, streams: 1 });
      else seen.streams++;
    }
    let total = 0;
    for (const { o, reason, streams } of ended.values()) {
      total += streams;
      this.logger.warn(
        { event: 'tunnel_revoked', side: o.side, peer: o.peer, service: o.service, reason, streams },
        'open tunnel streams ended: the peer is no longer trusted',
      );
    }
    return total;
  }
}
