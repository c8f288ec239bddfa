/**
 * Closes a relayed connection after a hole punch replaced it, once its tunnel streams are done.
 * Closing it at once would half-close every stream on it (yamux), and a tunnel stream would lose
 * the rest of its data; new streams go to the direct connection anyway. Waits at most `maxWaitMs`.
 */
import type { Connection, Stream } from '@libp2p/interface';
import { HolePunchSetupError } from '../errors.js';

export interface RelayDrainInit {
  /** After this long the connection is closed with streams still on it, ms. */
  maxWaitMs: number;
  /** How often the streams are looked at, ms. @default 1000 */
  pollMs?: number;
  /** Streams worth waiting for (tunnel streams; DCUtR's own and identify's are not). */
  isPayloadStream(stream: Stream): boolean;
  onClosed(event: { peer: string; waitedMs: number; streamsLeft: number }): void;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

export class RelayDrain {
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly draining = new WeakSet<Connection>();
  private readonly now: () => number;
  private readonly pollMs: number;

  constructor(private readonly init: RelayDrainInit) {
    this.now = init.now ?? Date.now;
    this.pollMs = init.pollMs ?? 1_000;
  }

  /** Closes `relayed` now if no payload stream is on it, else once the last one ends. */
  closeWhenDone(relayed: Connection): void {
    if (this.draining.has(relayed)) return;
    this.draining.add(relayed);
    const started = this.now();
    const poll = (): void => {
      if (relayed.status !== 'open') return;
      const left = relayed.streams.filter((s) => this.init.isPayloadStream(s)).length;
      const waitedMs = this.now() - started;
      if (left > 0 && waitedMs < this.init.maxWaitMs) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          poll();
        }, this.pollMs);
        t.unref();
        this.timers.add(t);
        return;
      }
      this.init.onClosed({ peer: relayed.remotePeer.toString(), waitedMs, streamsLeft: left });
      relayed.close().catch(() => relayed.abort(new HolePunchSetupError('relayed connection did not close')));
    };
    poll();
  }

  /** Stops waiting; the node's stop closes the connections still open. */
  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
