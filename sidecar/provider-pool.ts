/**
 * Which provider a new connection of a forward goes to: a small pure state machine.
 *
 * Providers come and go (DHT records outlive their pods), so selection is optimistic but quick to
 * give up: healthy providers take turns (round robin), one that fails is put in exponential backoff
 * and tried only after every healthy one, and one not confirmed by discovery for `ttlMs` is dropped.
 */

export interface ProviderPoolInit {
  /** First backoff after a failure. @default 500 */
  baseBackoffMs?: number;
  /** Backoff ceiling. @default 30000 */
  maxBackoffMs?: number;
  /** Drop a provider not seen by discovery (and not connected) for this long. @default 180000 */
  ttlMs?: number;
}

export interface ProviderState {
  peer: string;
  failures: number;
  /** Epoch ms before which the provider is only a last resort. */
  retryAt: number;
  /** Epoch ms when discovery last confirmed it. */
  seenAt: number;
  picks: number;
}

export class ProviderPool {
  private readonly providers = new Map<string, ProviderState>();
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly ttlMs: number;
  private turn = 0;

  constructor(init: ProviderPoolInit = {}) {
    this.baseBackoffMs = init.baseBackoffMs ?? 500;
    this.maxBackoffMs = init.maxBackoffMs ?? 30_000;
    this.ttlMs = init.ttlMs ?? 180_000;
  }

  /** Records that discovery saw these providers now. Returns true when a new one appeared. */
  seen(peers: Iterable<string>, now: number): boolean {
    let added = false;
    for (const peer of peers) {
      const p = this.providers.get(peer);
      if (p === undefined) {
        this.providers.set(peer, { peer, failures: 0, retryAt: 0, seenAt: now, picks: 0 });
        added = true;
      } else p.seenAt = now;
    }
    return added;
  }

  /** Drops providers that discovery has not confirmed for the TTL, unless `keep` says otherwise. */
  expire(now: number, keep: (peer: string) => boolean = () => false): string[] {
    const dropped: string[] = [];
    for (const [peer, p] of this.providers) {
      if (now - p.seenAt > this.ttlMs && !keep(peer)) {
        this.providers.delete(peer);
        dropped.push(peer);
      }
    }
    return dropped;
  }

  remove(peer: string): void {
    this.providers.delete(peer);
  }

  /** The order to try providers in for one new connection: healthy in turn, then backed-off. */
  candidates(now: number): string[] {
    const all = [...this.providers.values()];
    const healthy = all.filter((p) => p.retryAt <= now).sort((a, b) => a.peer.localeCompare(b.peer));
    const waiting = all.filter((p) => p.retryAt > now).sort((a, b) => a.retryAt - b.retryAt);
    const start = healthy.length === 0 ? 0 : this.turn++ % healthy.length;
    const rotated = [...healthy.slice(start), ...healthy.slice(0, start)];
    return [...rotated, ...waiting].map((p) => p.peer);
  }

  succeeded(peer: string): void {
    const p = this.providers.get(peer);
    if (p === undefined) return;
    p.failures = 0;
    p.retryAt = 0;
    p.picks++;
  }

  failed(peer: string, now: number): void {
    const p = this.providers.get(peer);
    if (p === undefined) return;
    p.failures++;
    p.retryAt = now + Math.min(this.maxBackoffMs, this.baseBackoffMs * 2 ** (p.failures - 1));
  }

  get size(): number {
    return this.providers.size;
  }

  healthyCount(now: number): number {
    let n = 0;
    for (const p of this.providers.values()) if (p.retryAt <= now) n++;
    return n;
  }

  list(): ProviderState[] {
    return [...this.providers.values()].map((p) => ({ ...p }));
  }
}
