/**
 * Which provider a new connection of a forward goes to: a small pure state machine.
 *
 * Providers come and go (DHT records outlive their pods), so selection is optimistic but quick to
 * give up: healthy providers take turns (round robin), one that fails is put in exponential backoff
 * and tried only after every healthy one, and one not confirmed by discovery for `ttlMs` is dropped.
 *
 * Healthy providers this node holds a connection to come before healthy ones it would have to dial
 * first: a stream on an open connection costs one round trip, a dial to a dead pod's address costs
 * a whole dial timeout. A provider whose connection closed (a pod that stopped and said goodbye) or
 * that discovery brought again is therefore never a new connection's first try while a connected
 * one is left; the forwarder dials it in the background (`select().unconnected`) and it takes its
 * turns again once connected. Seeing a provider's record again never shortens its backoff: only a
 * stream that opened does.
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
  /** Streams opened to it. */
  picks: number;
  /** New connections that tried it (a stream, after a dial when not connected). */
  attempts: number;
}

/** One new connection's order of providers, by what trying each costs. */
export interface Selection {
  /** Healthy, and this node holds a connection to it: in turn. */
  connected: string[];
  /** Healthy, but a dial comes first (it may be a dead pod's record): in turn. */
  unconnected: string[];
  /** In backoff after a failure, the soonest retry first: last resorts. */
  backedOff: string[];
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
        this.providers.set(peer, { peer, failures: 0, retryAt: 0, seenAt: now, picks: 0, attempts: 0 });
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

  has(peer: string): boolean {
    return this.providers.has(peer);
  }

  remove(peer: string): void {
    this.providers.delete(peer);
  }

  /**
   * The providers to try for one new connection, grouped by cost. `isConnected` says whether this
   * node holds an open connection to a peer (everything counts as connected by default).
   */
  select(now: number, isConnected: (peer: string) => boolean = () => true): Selection {
    const all = [...this.providers.values()];
    const healthy = all.filter((p) => p.retryAt <= now).sort((a, b) => a.peer.localeCompare(b.peer));
    const waiting = all.filter((p) => p.retryAt > now).sort((a, b) => a.retryAt - b.retryAt);
    const turn = this.turn++;
    const rotate = (ps: ProviderState[]) => {
      const start = ps.length === 0 ? 0 : turn % ps.length;
      return [...ps.slice(start), ...ps.slice(0, start)].map((p) => p.peer);
    };
    return {
      connected: rotate(healthy.filter((p) => isConnected(p.peer))),
      unconnected: rotate(healthy.filter((p) => !isConnected(p.peer))),
      backedOff: waiting.map((p) => p.peer),
    };
  }

  /** Healthy providers `isConnected` says this node holds no connection to (worth a dial). */
  unconnected(now: number, isConnected: (peer: string) => boolean): string[] {
    const out: string[] = [];
    for (const p of this.providers.values()) if (p.retryAt <= now && !isConnected(p.peer)) out.push(p.peer);
    return out;
  }

  /** A new connection is trying this provider. */
  attempted(peer: string): void {
    const p = this.providers.get(peer);
    if (p !== undefined) p.attempts++;
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

  list(): ProviderState[] {
    return [...this.providers.values()].map((p) => ({ ...p }));
  }
}
