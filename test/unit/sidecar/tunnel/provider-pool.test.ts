import { describe, expect, it } from '@jest/globals';
import { ProviderPool, type Selection } from '../../../../sidecar/tunnel/provider-pool.js';

/** A selection's groups as one list, in the order a new connection tries them. */
const order = (s: Selection): string[] => [...s.connected, ...s.unconnected, ...s.backedOff];
/** The providers not backing off. */
const healthy = (s: Selection): string[] => [...s.connected, ...s.unconnected].sort();

describe('ProviderPool', () => {
  it('takes healthy providers in turn', () => {
    const pool = new ProviderPool();
    pool.seen(['a', 'b', 'c'], 0);
    const firsts = Array.from({ length: 6 }, () => order(pool.select(0))[0]);
    expect(firsts).toEqual(['a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('puts a failed provider last, backing off exponentially, and forgives it on success', () => {
    const pool = new ProviderPool({ baseBackoffMs: 100, maxBackoffMs: 1_000 });
    pool.seen(['a', 'b'], 0);
    pool.failed('a', 0);
    expect(order(pool.select(50))).toEqual(['b', 'a']);
    expect(healthy(pool.select(50))).toHaveLength(1);
    pool.failed('a', 100);
    expect(pool.list().find((p) => p.peer === 'a')?.retryAt).toBe(300);
    for (let i = 0; i < 10; i++) pool.failed('a', 1_000);
    expect(pool.list().find((p) => p.peer === 'a')?.retryAt).toBe(2_000);
    pool.succeeded('a');
    expect(healthy(pool.select(1_000))).toHaveLength(2);
  });

  it('keeps a backed-off provider as a last resort rather than dropping it', () => {
    const pool = new ProviderPool();
    pool.seen(['only'], 0);
    pool.failed('only', 0);
    expect(order(pool.select(1))).toEqual(['only']);
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

  it('puts healthy connected providers first, in turn, before healthy ones it must dial', () => {
    const pool = new ProviderPool();
    pool.seen(['a', 'b', 'c', 'd'], 0);
    const connected = (p: string) => p === 'b' || p === 'd';
    const selections = Array.from({ length: 4 }, () => pool.select(0, connected));
    expect(selections.map((s) => s.connected)).toEqual([
      ['b', 'd'],
      ['d', 'b'],
      ['b', 'd'],
      ['d', 'b'],
    ]);
    expect(selections.map((s) => s.unconnected[0])).toEqual(['a', 'c', 'a', 'c']);
    expect(order(pool.select(0, connected)).slice(0, 2).sort()).toEqual(['b', 'd']);
  });

  it('never offers a provider whose connection closed before a connected one', () => {
    // A replica stopped and closed its connection: it has not failed yet, but a dial comes first.
    const pool = new ProviderPool();
    pool.seen(['gone', 'live'], 0);
    for (let i = 0; i < 10; i++) {
      const s = pool.select(i, (p) => p === 'live');
      expect(s).toEqual({ connected: ['live'], unconnected: ['gone'], backedOff: [] });
    }
  });

  it('keeps a failed provider in backoff when discovery sees its record again', () => {
    const pool = new ProviderPool({ baseBackoffMs: 1_000 });
    pool.seen(['dead', 'live'], 0);
    pool.failed('dead', 0);
    expect(pool.seen(['dead', 'live'], 10)).toBe(false);
    expect(pool.select(20)).toEqual({ connected: ['live'], unconnected: [], backedOff: ['dead'] });
    pool.failed('dead', 1_000);
    pool.seen(['dead'], 1_100);
    expect(pool.list().find((p) => p.peer === 'dead')).toMatchObject({ failures: 2, retryAt: 3_000 });
  });

  it('offers a provider back after its bounded backoff, and forgets its failures once a stream opens', () => {
    const pool = new ProviderPool({ baseBackoffMs: 100, maxBackoffMs: 400 });
    pool.seen(['x'], 0);
    for (let i = 0; i < 20; i++) pool.failed('x', 0);
    expect(pool.select(399).backedOff).toEqual(['x']);
    // Back after at most maxBackoffMs: a dial first when not connected, then in turn once connected.
    expect(pool.select(400, () => false).unconnected).toEqual(['x']);
    expect(pool.select(400, () => true).connected).toEqual(['x']);
    pool.succeeded('x');
    expect(pool.list()[0]).toMatchObject({ failures: 0, retryAt: 0, picks: 1 });
  });

  it('counts the new connections that tried each provider', () => {
    const pool = new ProviderPool();
    pool.seen(['a'], 0);
    pool.attempted('a');
    pool.attempted('a');
    pool.attempted('unknown');
    expect(pool.list()).toEqual([expect.objectContaining({ peer: 'a', attempts: 2, picks: 0 })]);
  });

  it('reports whether discovery brought a new provider', () => {
    const pool = new ProviderPool();
    expect(pool.seen(['a'], 0)).toBe(true);
    expect(pool.seen(['a'], 1)).toBe(false);
    expect(pool.seen(['a', 'b'], 2)).toBe(true);
  });
});
