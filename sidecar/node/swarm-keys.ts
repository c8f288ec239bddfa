/**
 * Which swarm key each connection uses (docs/architecture.md, Swarm-key rollover): the protector
 * says so for the transport connection it protected; /status, the metrics and the operator read it
 * here by connection.
 */
import type { Connection } from '@libp2p/interface';
import { SWARM_KEY_NAMES, type SwarmKeyName } from '../crypto/pnet-keys.js';
import { connectionMaConn } from '../patches/libp2p.js';

export class SwarmKeyRegistry {
  private readonly keys = new WeakMap<object, SwarmKeyName>();
  private readonly fallbacks = new Map<SwarmKeyName, number>();
  private fallbackListener: ((from: SwarmKeyName, n: number) => void) | undefined;

  /** A dial refused under `from` is tried again under the older key. */
  fellBack(from: SwarmKeyName): void {
    this.fallbacks.set(from, (this.fallbacks.get(from) ?? 0) + 1);
    this.fallbackListener?.(from, 1);
  }

  /** Tells `listener` of every fallback: those so far at once, then each as it happens. */
  onFallback(listener: (from: SwarmKeyName, n: number) => void): void {
    this.fallbackListener = listener;
    for (const [from, n] of this.fallbacks) listener(from, n);
  }

  /** The protector learnt that `transportConnection` uses `key`. */
  record(transportConnection: object, key: SwarmKeyName): void {
    this.keys.set(transportConnection, key);
  }

  /** The key of `connection`; undefined when the protector never told (it skipped the connection). */
  keyOf(connection: Connection): SwarmKeyName | undefined {
    return this.keys.get(connectionMaConn(connection));
  }

  /** Open connections by key. */
  count(connections: readonly Connection[]): Record<SwarmKeyName, number> {
    const out = Object.fromEntries(SWARM_KEY_NAMES.map((k) => [k, 0])) as Record<SwarmKeyName, number>;
    for (const c of connections) {
      if (c.status !== 'open') continue;
      const key = this.keyOf(c);
      if (key !== undefined) out[key]++;
    }
    return out;
  }
}
