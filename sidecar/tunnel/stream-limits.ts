/**
 * How many tunnel streams this node's exposes serve at once: in total and per peer. Each served
 * stream holds a target socket and up to a yamux window of the peer's bytes that the target has
 * not read yet, so the total is what fits in the memory the container may use beside the node's
 * own baseline; one peer gets at most half, so a second member always finds room.
 */
import type { NodeConfig } from '../config/config.js';

/** What a node uses before serving any stream (measured idle RSS ~150 MB, rounded up). */
export const BASELINE_MIB = 160;
/** What one served stream may hold when its target does not read (its initial yamux window, a socket). */
export const STREAM_COST_KIB = 320;

export interface StreamLimitValues {
  streams: number;
  streamsPerPeer: number;
}

/** The configured limits, or those derived from `limits.memoryMiB`. */
export function streamLimits(limits: NodeConfig['limits']): StreamLimitValues {
  const budgetKiB = Math.max(0, limits.memoryMiB - BASELINE_MIB) * 1024;
  const streams = limits.streams ?? Math.max(16, Math.floor(budgetKiB / STREAM_COST_KIB));
  const streamsPerPeer = Math.min(streams, limits.streamsPerPeer ?? Math.max(1, Math.floor(streams / 2)));
  return { streams, streamsPerPeer };
}

export type StreamRefusal = 'peer_limit' | 'total_limit';

/** Counts streams held per peer; shared by every expose of a node. */
export class StreamLimiter {
  private readonly perPeer = new Map<string, number>();
  private total = 0;

  constructor(readonly limits: StreamLimitValues) {}

  /** Takes a slot for `peer`, or says why not. */
  acquire(peer: string): StreamRefusal | undefined {
    if (this.total >= this.limits.streams) return 'total_limit';
    const held = this.perPeer.get(peer) ?? 0;
    if (held >= this.limits.streamsPerPeer) return 'peer_limit';
    this.perPeer.set(peer, held + 1);
    this.total++;
    return undefined;
  }

  release(peer: string): void {
    const held = this.perPeer.get(peer);
    if (held === undefined) return;
    if (held <= 1) this.perPeer.delete(peer);
    else this.perPeer.set(peer, held - 1);
    this.total--;
  }

  get active(): number {
    return this.total;
  }

  heldBy(peer: string): number {
    return this.perPeer.get(peer) ?? 0;
  }
}
