/** Pure parts of the controllers: the work queue's guarantees, the Ready reason order, conditions. */
import { describe, expect, it } from '@jest/globals';
import { WorkQueue } from '../../../../operator/controller/queue.js';
import { computeTunnelStatus, setReady, type TunnelFacts } from '../../../../operator/controller/status.js';
import { network, pod, sidecarReport, tunnelFacts, tunnelFixture } from '../fixtures.js';

const tunnel = tunnelFixture(3);
const report = sidecarReport;
const facts = (over: Partial<TunnelFacts>): TunnelFacts => tunnelFacts(tunnel, over);
const reason = (f: TunnelFacts) => computeTunnelStatus(f).conditions?.find((c) => c.type === 'Ready')?.reason;

describe('PeerTunnel status', () => {
  it('gives the first reason that applies, in the documented order', () => {
    expect(reason(facts({ network: undefined }))).toBe('NetworkNotFound');
    expect(reason(facts({ swarmKey: 'secretMissing' }))).toBe('SwarmKeySecretMissing');
    expect(reason(facts({ network: { ...network, spec: { ...network.spec, bootstrap: [] } } }))).toBe(
      'NetworkNotReady',
    );
    expect(reason(facts({}))).toBe('NoPodsSelected');
    expect(reason(facts({ pods: [pod('a', false, false), pod('b', true, true)] }))).toBe(
      'PodsMissingSidecar',
    );
    expect(reason(facts({ pods: [pod('b', true, false)] }))).toBe('SidecarsNotReady');
    expect(reason(facts({ pods: [pod('b', true, true)] }))).toBe('SidecarStatusUnavailable');
    expect(reason(facts({ pods: [pod('b', true, true)], reports: new Map([['b', report(0)]]) }))).toBe(
      'NoProviders',
    );
    expect(reason(facts({ pods: [pod('b', true, true)], reports: new Map([['b', report(2)]]) }))).toBe(
      'Ready',
    );
  });

  it('counts pods and summarises providers and path', () => {
    const s = computeTunnelStatus(
      facts({
        pods: [pod('a', false, false), pod('b', true, true), pod('c', true, false)],
        reports: new Map([['b', report(2)]]),
      }),
    );
    expect(s.pods).toEqual({ selected: 3, injected: 2, ready: 1, missingSidecar: ['a'] });
    expect(s.forwards).toEqual([{ name: 'db', providers: 2, path: 'relayed' }]);
    expect(s.summary).toEqual({ pods: '1/3', providers: '2', path: 'relayed' });
    expect(s.observedGeneration).toBe(3);
  });

  it('moves lastTransitionTime only when the status changes', () => {
    const t0 = new Date('2026-01-01T00:00:00Z');
    const t1 = new Date('2026-01-01T01:00:00Z');
    const a = setReady(undefined, { status: 'False', reason: 'X', message: 'm' }, 1, t0);
    const b = setReady(a, { status: 'False', reason: 'Y', message: 'n' }, 2, t1);
    expect(b[0]?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    const c = setReady(b, { status: 'True', reason: 'Ready', message: 'ok' }, 2, t1);
    expect(c[0]?.lastTransitionTime).toBe('2026-01-01T01:00:00Z');
  });
});

describe('WorkQueue', () => {
  it('dedupes waiting keys, never runs one key twice at once, and retries failures', async () => {
    const q = new WorkQueue({ minRetryMs: 5 });
    const runs: string[] = [];
    let active = 0;
    let maxActive = 0;
    let failures = 2;
    const done = q.run(async (key) => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs.push(key);
      await new Promise((r) => setTimeout(r, 5));
      active--;
      if (key === 'flaky' && failures-- > 0) throw new Error('boom');
      return undefined;
    }, 4);
    q.add('a');
    q.add('a');
    q.add('a');
    q.add('flaky');
    // Until the flaky key succeeded (two retries with backoff), bounded: a fixed 100 ms was too
    // short on a loaded machine.
    for (
      const until = Date.now() + 5_000;
      runs.filter((k) => k === 'flaky').length < 3 && Date.now() < until;
    )
      await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 20));
    q.shutDown();
    await done;
    expect(runs.filter((k) => k === 'a')).toHaveLength(1);
    expect(runs.filter((k) => k === 'flaky')).toHaveLength(3);
    expect(maxActive).toBeLessThanOrEqual(2);
  });
});
