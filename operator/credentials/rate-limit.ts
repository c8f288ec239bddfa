/**
 * Token buckets by key (a pod's uid, a client address), with a bounded number of keys: the
 * credential issuer's answer to a pod, or an address, asking faster than renewals ever need.
 */
export interface RateLimitInit {
  /** Requests a key may make at once. */
  burst: number;
  /** Requests a key regains per second. */
  perSecond: number;
  /** Keys remembered; the least recently seen is forgotten beyond this. */
  maxKeys: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(private readonly init: RateLimitInit) {}

  /** Takes one request for `key`; false when it has none left. */
  take(key: string, nowMs: number): boolean {
    const { burst, perSecond, maxKeys } = this.init;
    const b = this.buckets.get(key) ?? { tokens: burst, at: nowMs };
    this.buckets.delete(key);
    b.tokens = Math.min(burst, b.tokens + ((nowMs - b.at) / 1000) * perSecond);
    b.at = nowMs;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > maxKeys) {
      const oldest = this.buckets.keys().next().value;
      if (oldest !== undefined) this.buckets.delete(oldest);
    }
    return ok;
  }
}
