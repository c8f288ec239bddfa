import { describe, expect, it } from '@jest/globals';
import { ProviderPool } from '../../sidecar/provider-pool.js';

describe('ProviderPool', () => {
  it('takes healthy providers in turn', () => {
    const pool = new ProviderPool();
    pool.seen(['a', 'b', 'c'], 0);
    const firsts = Array.from({ length: 6 }, () => pool.candidates(0)[0]);
    expect(firsts).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('puts a failed provider last, backing off exponentially, and forgives it on success', () => {
    const pool = new ProviderPool({ baseBackoffMs: 100, maxBackoffMs: 1_000 });
    pool.seen(['a', 'b'], 0);
    pool.failed('a', 0);
    expect(pool.candidates(50)).toEqual(['b', 'a']);
    expect(pool.healthyCount(50)).toBe(1);
    pool.failed('a', 100);
    expect(pool.list().find((p) => p.peer === 'a')?.retryAt).toBe(300);
    for (let i = 0; i < 10; i++) pool.failed('a', 1_000);
    expect(pool.list().find((p) => p.peer === 'a')?.retryAt).toBe(2_000);
    pool.succeeded('a');
    expect(pool.healthyCount(1_000)).toBe(2);
  });

  it('keeps a backed-off provider as a last resort rather than dropping it', () => {
    const pool = new ProviderPool();
    pool.seen(['only'], 0);
    pool.failed('only', 0);
    expect(pool.candidates(1)).toEqual(['only']);
  });

  it('expires providers discovery no longer confirms, unless still connected', () => {
    const pool = new ProviderPool({ ttlMs: 1_000 });
    pool.seen(['a', 'b', 'c'], 0);
    pool.seen(['a'], 900);
    expect(pool.expire(1_500, (p) => p === 'b').sort()).toEqual(['c']);
    expect(
      pool
        .list()
        .map((p) => p.peer)
        .sort(),
    ).toEqual(['a', 'b']);
  });

  it('reports whether discovery brought a new provider', () => {
    const pool = new ProviderPool();
    expect(pool.seen(['a'], 0)).toBe(true);
    expect(pool.seen(['a'], 1)).toBe(false);
    expect(pool.seen(['a', 'b'], 2)).toBe(true);
  });
});
