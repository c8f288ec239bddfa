/** The operator's own check of what a tunnel may ask for, and the Ready condition it gives. */
import { describe, expect, it } from '@jest/globals';
import type { PeerNetwork, PeerTunnel } from '../../../../crds/schema.js';
import { computeTunnelStatus } from '../../../../operator/controller/status.js';
import { tunnelPolicyProblem } from '../../../../operator/inject/tunnel-policy.js';

const tunnel = (selector: PeerTunnel['spec']['selector'], host?: string): PeerTunnel => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name: 't', namespace: 'shop', generation: 1 },
  spec: {
    networkRef: { name: 'mesh' },
    selector,
    expose: [host === undefined ? { name: 'db', port: 5432 } : { name: 'db', port: 5432, host }],
  },
});
const network: PeerNetwork = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop' },
  spec: {
    swarmKeySecretRef: { name: 'k' },
    bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
  },
};
const app = { matchLabels: { app: 'db' } };

describe('tunnel policy', () => {
  it.each([
    ['an empty selector', tunnel({}), [], 'SelectorSelectsEverything'],
    ['empty label lists', tunnel({ matchLabels: {}, matchExpressions: [] }), [], 'SelectorSelectsEverything'],
    ['a remote host, namespace not allowed', tunnel(app, '10.0.0.5'), [], 'RemoteExposeNotAllowed'],
    [
      'a remote host, another namespace allowed',
      tunnel(app, '10.0.0.5'),
      ['other'],
      'RemoteExposeNotAllowed',
    ],
    ['link-local, namespace allowed', tunnel(app, '169.254.169.254'), ['shop'], 'RemoteExposeNotAllowed'],
    [
      'mapped link-local, namespace allowed',
      tunnel(app, '::ffff:169.254.169.254'),
      ['shop'],
      'RemoteExposeNotAllowed',
    ],
    ['loopback', tunnel(app, '127.0.0.1'), [], undefined],
    ['IPv6 loopback', tunnel(app, '::1'), [], undefined],
    ['the default host', tunnel(app), [], undefined],
    ['a remote host, namespace allowed', tunnel(app, '10.0.0.5'), ['shop'], undefined],
  ] as const)('%s', (_what, t, allowed, reason) => {
    expect(tunnelPolicyProblem(t, allowed)?.reason).toBe(reason);
  });

  it('puts the refusal in the Ready condition, naming the field', () => {
    const status = computeTunnelStatus({
      tunnel: tunnel(app, '10.96.0.1'),
      network,
      swarmKey: 'ok',
      pods: [],
      containerName: 'peertunnel',
      reports: new Map(),
      now: new Date(0),
    });
    const ready = status.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'RemoteExposeNotAllowed' });
    expect(ready?.message).toContain('spec.expose[0].host 10.96.0.1');
    const all = computeTunnelStatus({
      tunnel: tunnel({}),
      network,
      swarmKey: 'ok',
      pods: [],
      containerName: 'peertunnel',
      reports: new Map(),
      now: new Date(0),
    });
    expect(all.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('SelectorSelectsEverything');
  });
});
