/** Fixture builders for the operator's status tests: a PeerTunnel, its PeerNetwork, its pods, the facts. */
import type { V1Pod } from '@kubernetes/client-node';
import type { SidecarReport } from '../../../contracts/sidecar-status.js';
import type { PeerNetwork, PeerTunnel } from '../../../crds/schema.js';
import type { TunnelFacts } from '../../../operator/controller/status.js';

/** PeerTunnel shop/orders forwarding `db` on 5432, selecting app=orders, at the given generation. */
export const tunnelFixture = (generation: number): PeerTunnel => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name: 'orders', namespace: 'shop', generation },
  spec: {
    networkRef: { name: 'mesh' },
    selector: { matchLabels: { app: 'orders' } },
    forward: [{ name: 'db', localPort: 5432 }],
  },
});

/** PeerNetwork shop/mesh with one bootstrap address. */
export const network: PeerNetwork = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop' },
  spec: {
    swarmKeySecretRef: { name: 'k' },
    bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
  },
};

/** A pod app=orders in shop, with (injected) or without the peertunnel sidecar, ready or not. */
export const pod = (name: string, injected = true, ready = true): V1Pod => ({
  metadata: {
    name,
    namespace: 'shop',
    labels: { app: 'orders' },
    annotations: injected ? { 'peertunnel.io/tunnels': 'orders' } : {},
  },
  spec: {
    initContainers: injected ? [{ name: 'peertunnel' }] : [],
    containers: [{ name: 'app' }],
  },
  status: {
    initContainerStatuses: injected
      ? [{ name: 'peertunnel', ready, image: '', imageID: '', restartCount: 0 }]
      : [],
  },
});

/** The facts about a tunnel: network found, swarm key ok, no pods or reports yet, unless overridden. */
export const tunnelFacts = (tunnel: PeerTunnel, over: Partial<TunnelFacts> = {}): TunnelFacts => ({
  tunnel,
  network,
  swarmKey: 'ok',
  pods: [],
  containerName: 'peertunnel',
  reports: new Map(),
  now: new Date('2026-01-01T00:00:00Z'),
  ...over,
});

/** A ready sidecar's report: `providers` connected, healthy, relayed providers of `db`. */
export const sidecarReport = (providers: number): SidecarReport => ({
  peerId: 'p',
  ready: true,
  exposes: [],
  forwards: [
    {
      name: 'db',
      providers: Array.from({ length: providers }, (_, i) => ({
        peer: `x${i}`,
        connected: true,
        path: 'relayed',
        healthy: true,
        failures: 0,
      })),
    },
  ],
});
