/**
 * How often hole punching is tried, per peer. A round (B) is one unilateral dial plus up to
 * `triesPerRound` punch tries; a failed round is retried after `retryDelayMs`, doubling, until
 * `maxFailedRounds` failures lie within `windowMs`; then the peer is given up until the oldest
 * failure leaves the window. A (the answering side) fails per try, so it refuses B only after
 * `maxFailedRounds * triesPerRound` failed answers: B's own bound always comes first.
 */

export interface RoundBookInit {
  maxFailedRounds: number;
  windowMs: number;
  retryDelayMs: number;
  triesPerRound: number;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

interface PeerRounds {
  failures: number[];
  running: boolean;
  retry?: NodeJS.Timeout;
}

export type RoundVerdict = 'start' | 'busy' | 'gave_up';

export class RoundBook {
  private readonly peers = new Map<string, PeerRounds>();
  private readonly now: () => number;

  constructor(private readonly init: RoundBookInit) {
    this.now = init.now ?? Date.now;
  }

  /** Whether B may start a round with `peer` now. */
  verdict(peer: string): RoundVerdict {
    const r = this.peers.get(peer);
    if (r?.running === true) return 'busy';
    return this.recentFailures(peer) >= this.init.maxFailedRounds ? 'gave_up' : 'start';
  }

  begin(peer: string): void {
    this.entry(peer).running = true;
  }

  end(peer: string): void {
    const r = this.peers.get(peer);
    if (r !== undefined) r.running = false;
  }

  /** Records a failed round (B) or answer (A); returns the failures within the window. */
  fail(peer: string): number {
    this.entry(peer).failures.push(this.now());
    return this.recentFailures(peer);
  }

  /** A direct connection exists: the peer's failures no longer count. */
  forget(peer: string): void {
    clearTimeout(this.peers.get(peer)?.retry);
    this.peers.delete(peer);
  }

  /** The wait before the next round after `failures` recent ones; undefined at the bound. */
  nextDelay(failures: number): number | undefined {
    if (failures >= this.init.maxFailedRounds) return undefined;
    return this.init.retryDelayMs * 2 ** (Math.max(failures, 1) - 1);
  }

  /** Runs `round` after `delayMs`, replacing a retry already waiting for this peer. */
  retry(peer: string, delayMs: number, round: () => void): void {
    const r = this.entry(peer);
    clearTimeout(r.retry);
    r.retry = setTimeout(() => {
      r.retry = undefined;
      round();
    }, delayMs);
    r.retry.unref();
  }

  /** Whether A refuses to answer `peer` (B kept trying past its own bound). */
  answerRefused(peer: string): boolean {
    return this.recentFailures(peer) >= this.init.maxFailedRounds * this.init.triesPerRound;
  }

  /** Peers given up on now; drops the entries nothing is left in. */
  gaveUp(): string[] {
    const out: string[] = [];
    for (const [peer, r] of this.peers) {
      const failures = this.recentFailures(peer);
      if (failures >= this.init.maxFailedRounds) out.push(peer);
      else if (failures === 0 && !r.running && r.retry === undefined) this.peers.delete(peer);
    }
    return out;
  }

  /** Cancels every waiting retry. */
  stop(): void {
    for (const r of this.peers.values()) {
      clearTimeout(r.retry);
      r.retry = undefined;
    }
  }

  private entry(peer: string): PeerRounds {
    let r = this.peers.get(peer);
    if (r === undefined) {
      r = { failures: [], running: false };
      this.peers.set(peer, r);
    }
    return r;
  }

  private recentFailures(peer: string): number {
    const r = this.peers.get(peer);
    if (r === undefined) return 0;
    const now = this.now();
    r.failures = r.failures.filter((t) => now - t < this.init.windowMs);
    return r.failures.length;
  }
}
