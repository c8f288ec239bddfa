/**
 * Which providers a PeerTunnel status counts: a forwarder's /status keeps listing a dead exposer
 * (its DHT record outlives it), so only providers that are not backing off and are connected, or
 * have not failed since their last success, count; the path comes from those alone.
 */
import { describe, expect, it } from '@jest/globals';
import { parseSidecarReport, type SidecarReport } from '../../../../contracts/sidecar-status.js';
import { computeTunnelStatus, isLiveProvider } from '../../../../operator/controller/status.js';
import { pod, tunnelFacts, tunnelFixture } from '../fixtures.js';

const tunnel = tunnelFixture(1);

type P = SidecarReport['forwards'][number]['providers'][number];
const provider = (peer: string, over: Partial<P> = {}): P => ({
  peer,
  connected: false,
  path: null,
  healthy: true,
  failures: 0,
  ...over,
});
const report = (providers: P[]): SidecarReport => ({
  peerId: 'me',
  ready: true,
  exposes: [],
  forwards: [{ name: 'db', providers }],
});
const statusOf = (reports: Array<[string, SidecarReport]>) =>
  computeTunnelStatus(
    tunnelFacts(tunnel, { pods: reports.map(([name]) => pod(name)), reports: new Map(reports) }),
  );

describe('live providers', () => {
  it('counts connected and never-failed providers, not ones backing off or failed since', () => {
    expect(isLiveProvider(provider('a', { connected: true, path: 'direct' }))).toBe(true);
    // Known from the DHT, not dialled yet: a provider until an attempt fails.
    expect(isLiveProvider(provider('b'))).toBe(true);
    // Backing off after a failure.
    expect(isLiveProvider(provider('c', { healthy: false, failures: 1 }))).toBe(false);
    // Backoff over, but it failed and is not connected: the stale record of a dead exposer.
    expect(isLiveProvider(provider('d', { failures: 3 }))).toBe(false);
    // Connected again after failures: the next success resets them; count it meanwhile.
    expect(isLiveProvider(provider('e', { connected: true, path: 'relayed', failures: 2 }))).toBe(true);
    // Connected but backing off (a stream open failed on a live connection): not counted.
    expect(isLiveProvider(provider('f', { connected: true, healthy: false, failures: 1 }))).toBe(false);
  });

  it('keeps only live providers in the status counts and paths, and says NoProviders when none is', () => {
    const live = statusOf([
      [
        'a',
        report([
          provider('x', { connected: true, path: 'direct' }),
          provider('dead', { failures: 2 }),
          provider('dying', { healthy: false, failures: 1, connected: true, path: 'relayed' }),
        ]),
      ],
    ]);
    expect(live.forwards).toEqual([{ name: 'db', providers: 1, path: 'direct' }]);
    expect(live.summary?.providers).toBe('1');
    expect(live.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('Ready');

    const dead = statusOf([['a', report([provider('dead', { failures: 2 })])]]);
    expect(dead.forwards).toEqual([{ name: 'db', providers: 0, path: 'none' }]);
    expect(dead.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('NoProviders');
  });

  it('counts a peer once when any ready sidecar sees it live', () => {
    const s = statusOf([
      ['a', report([provider('x', { failures: 4 })])],
      ['b', report([provider('x', { connected: true, path: 'direct' }), provider('y')])],
    ]);
    expect(s.forwards).toEqual([{ name: 'db', providers: 2, path: 'direct' }]);
  });

  it('reads health from /status, treating a sidecar that omits it as healthy with no failures', () => {
    const r = parseSidecarReport({
      peerId: 'me',
      forwards: [
        {
          name: 'db',
          providers: [
            { peer: 'old', connected: false, path: null },
            { peer: 'new', connected: false, path: null, healthy: false, failures: 2, picks: 5 },
            { peer: 'odd', connected: false, path: null, healthy: 'yes', failures: -1 },
          ],
        },
      ],
    });
    expect(r?.forwards[0]?.providers).toEqual([
      provider('old'),
      provider('new', { healthy: false, failures: 2 }),
      provider('odd'),
    ]);
  });
});
