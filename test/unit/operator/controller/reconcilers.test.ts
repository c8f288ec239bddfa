/**
 * Both reconcilers against a fake API client (a KubeClient whose requests land in a map and a call
 * log) and in-memory caches: the order of what they write, a status written only when it changed,
 * an event only when the Ready reason changed, and a sidecar /status that breaks its contract
 * refused, counted and logged. The real API server runs these paths in test/integration.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { KubeConfig, type V1Pod, type V1Secret } from '@kubernetes/client-node';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import type { PeerNetwork, PeerTunnel } from '../../../../crds/schema.js';
import type { Cache, ReconcileContext } from '../../../../operator/controller/context.js';
import { ApiEventRecorder } from '../../../../operator/controller/events.js';
import { reconcileNetwork } from '../../../../operator/controller/network-reconciler.js';
import { computeNetworkStatus, type NetworkFacts } from '../../../../operator/controller/network-status.js';
import {
  httpSidecarStatus,
  type SidecarStatusFetcher,
} from '../../../../operator/controller/sidecar-client.js';
import { reconcileTunnel } from '../../../../operator/controller/tunnel-reconciler.js';
import { KubeApiError } from '../../../../operator/errors.js';
import { injectSettings } from '../../../../operator/inject/settings.js';
import { KubeClient, type KubeRequest } from '../../../../operator/kube/client.js';
import { createOperatorMetrics } from '../../../../operator/metrics.js';
import { network, pod, sidecarReport, tunnelFixture } from '../fixtures.js';

type Obj = { metadata?: { name?: string; labels?: Record<string, string> }; status?: unknown };

/** The API server as a map of paths; every request is logged as `METHOD path`. */
class FakeKube extends KubeClient {
  readonly objects = new Map<string, Obj>();
  readonly calls: string[] = [];
  readonly bodies: Array<{ call: string; body: unknown }> = [];
  /** `METHOD path` prefixes that answer 403. */
  readonly forbidden = new Set<string>();

  constructor() {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'c', server: 'https://127.0.0.1:1', skipTLSVerify: true }],
      users: [{ name: 'u', token: 't' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    super(kc);
  }

  override async request<T>(path: string, req: KubeRequest = {}): Promise<T> {
    const method = req.method ?? 'GET';
    const call = `${method} ${path}`;
    this.calls.push(call);
    if (req.body !== undefined) this.bodies.push({ call, body: req.body });
    if ([...this.forbidden].some((f) => call.startsWith(f)))
      throw new KubeApiError(method, path, 403, 'Forbidden', 'not allowed');
    const body = req.body as Obj;
    const isList = /\/(deployments|services|secrets|events)$/.test(path);
    if (method === 'GET' && isList) {
      const selector = String(req.query?.labelSelector ?? '');
      const [k, v] = selector.split('=');
      const items = [...this.objects]
        .filter(([p]) => p.startsWith(`${path}/`) && !p.slice(path.length + 1).includes('/'))
        .map(([, o]) => o)
        .filter((o) => k === undefined || k === '' || o.metadata?.labels?.[k] === v);
      return { items } as T;
    }
    if (method === 'GET') {
      const o = this.objects.get(path);
      if (o === undefined) throw new KubeApiError(method, path, 404, 'NotFound', 'not found');
      return o as T;
    }
    if (method === 'POST') {
      const at = `${path}/${body.metadata?.name ?? ''}`;
      if (this.objects.has(at)) throw new KubeApiError(method, path, 409, 'AlreadyExists', 'exists');
      this.objects.set(at, body);
      return body as T;
    }
    if (method === 'DELETE') {
      this.objects.delete(path);
      return {} as T;
    }
    this.objects.set(path, body);
    return body as T;
  }

  /** Calls since the last take, and forget them. */
  take(): string[] {
    return this.calls.splice(0);
  }

  eventsPosted(): Array<{ reason: string; type: string; note: string }> {
    return this.bodies
      .filter((b) => b.call.startsWith('POST') && b.call.endsWith('/events'))
      .map((b) => b.body as { reason: string; type: string; note: string });
  }
}

class MapCache<T extends { metadata?: { name?: string; namespace?: string } }> implements Cache<T> {
  readonly items = new Map<string, T>();
  put(o: T): void {
    this.items.set(`${o.metadata?.namespace}/${o.metadata?.name}`, o);
  }
  list(namespace?: string): readonly T[] {
    return [...this.items.values()].filter(
      (o) => namespace === undefined || o.metadata?.namespace === namespace,
    );
  }
  get(name: string, namespace?: string): T | undefined {
    return this.items.get(`${namespace}/${name}`);
  }
}

const SECRET = '/api/v1/namespaces/shop/secrets/k';

function setup(sidecarStatus: SidecarStatusFetcher = async () => undefined) {
  const client = new FakeKube();
  const logs: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => logs.push(JSON.parse(s)) });
  const caches = {
    tunnels: new MapCache<PeerTunnel>(),
    networks: new MapCache<PeerNetwork>(),
    pods: new MapCache<V1Pod>(),
    secrets: new MapCache<V1Secret>(),
  };
  const metrics = createOperatorMetrics(new Registry());
  const now = () => new Date('2026-01-01T00:00:00Z');
  const ctx: ReconcileContext = {
    client,
    caches,
    events: new ApiEventRecorder(client, 'op-0', logger, now),
    metrics,
    logger,
    settings: injectSettings({ operatorNamespace: 'ops', image: 'i:1' }),
    sidecarStatus,
    now,
    statusIntervalMs: 30_000,
    networkResyncMs: 300_000,
  };
  // The cache holds Secrets' metadata only; the key itself is read with a GET.
  caches.secrets.put({ metadata: { name: 'k', namespace: 'shop' } });
  const key: V1Secret = { metadata: { name: 'k', namespace: 'shop' }, data: { 'swarm.key': 'a2V5' } };
  client.objects.set(SECRET, key);
  const count = async (name: string) =>
    (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value ?? 0;
  return { client, caches, ctx, logs, metrics, count };
}

/** What the informer would deliver after the status write: the object with the status it wrote. */
function settle<T extends PeerTunnel | PeerNetwork>(
  client: FakeKube,
  cache: MapCache<T>,
  obj: T,
  statusPath: string,
) {
  const written = client.objects.get(statusPath) as { status?: T['status'] } | undefined;
  const next = { ...obj, status: written?.status } as T;
  cache.put(next);
  return next;
}

const report = sidecarReport;

const TUNNEL_STATUS = '/apis/peertunnel.io/v1alpha1/namespaces/shop/peertunnels/orders/status';
const NETWORK_STATUS = '/apis/peertunnel.io/v1alpha1/namespaces/shop/peernetworks/mesh/status';
const EVENTS = '/apis/events.k8s.io/v1/namespaces/shop/events';
const readyOf = (status: unknown) =>
  (
    status as { conditions?: Array<{ type: string; reason: string; status: string }> } | undefined
  )?.conditions?.find((c) => c.type === 'Ready');

describe('reconcileTunnel', () => {
  it('writes the status, then one event; a second pass with nothing new writes nothing', async () => {
    let providers = 1;
    const { client, caches, ctx, count } = setup(async () => report(providers));
    let tunnel = tunnelFixture(1);
    caches.tunnels.put(tunnel);
    caches.networks.put(network);
    caches.pods.put(pod('a'));

    expect(await reconcileTunnel(ctx, 'shop/orders')).toEqual({ requeueAfterMs: 30_000 });
    expect(client.take()).toEqual([`GET ${SECRET}`, `PATCH ${TUNNEL_STATUS}`, `POST ${EVENTS}`]);
    expect(readyOf(client.objects.get(TUNNEL_STATUS)?.status)?.reason).toBe('Ready');
    expect(client.eventsPosted().map((e) => [e.type, e.reason])).toEqual([['Normal', 'Ready']]);
    expect(await count('peertunnel_operator_status_writes_total')).toBe(1);

    tunnel = settle(client, caches.tunnels, tunnel, TUNNEL_STATUS);
    await reconcileTunnel(ctx, 'shop/orders');
    // Only the key is read again (the cache holds Secrets' metadata, not their data).
    expect(client.take()).toEqual([`GET ${SECRET}`]);
    expect(await count('peertunnel_operator_status_writes_total')).toBe(1);

    // The status changes (two providers now), the reason does not: a write, no event.
    providers = 2;
    await reconcileTunnel(ctx, 'shop/orders');
    expect(client.take()).toEqual([`GET ${SECRET}`, `PATCH ${TUNNEL_STATUS}`]);
    tunnel = settle(client, caches.tunnels, tunnel, TUNNEL_STATUS);

    // A new reason: a write and a Warning event.
    providers = 0;
    await reconcileTunnel(ctx, 'shop/orders');
    expect(client.take()).toEqual([`GET ${SECRET}`, `PATCH ${TUNNEL_STATUS}`, `POST ${EVENTS}`]);
    expect(client.eventsPosted().map((e) => [e.type, e.reason])).toEqual([
      ['Normal', 'Ready'],
      ['Warning', 'NoProviders'],
    ]);
    expect(await count('peertunnel_operator_status_writes_total')).toBe(3);
  });

  it('returns the work done and the status error together when the status write fails', async () => {
    const { client, caches, ctx } = setup(async () => report(1));
    caches.tunnels.put(tunnelFixture(1));
    caches.networks.put(network);
    client.forbidden.add(`PATCH ${TUNNEL_STATUS}`);
    await expect(reconcileTunnel(ctx, 'shop/orders')).rejects.toMatchObject({
      name: 'ReconcileError',
      statusError: expect.objectContaining({ status: 403 }),
    });
    // No event for a status that was not written.
    expect(client.take()).toEqual([`GET ${SECRET}`, `PATCH ${TUNNEL_STATUS}`]);
  });

  it('tells each pod still running a deleted tunnel once, and writes nothing else', async () => {
    const { client, caches, ctx } = setup();
    caches.pods.put(pod('a'));
    caches.pods.put(pod('b'));
    expect(await reconcileTunnel(ctx, 'shop/orders')).toEqual({});
    expect(client.take()).toEqual([`POST ${EVENTS}`, `POST ${EVENTS}`]);
    expect(client.eventsPosted().map((e) => e.reason)).toEqual(['TunnelDeleted', 'TunnelDeleted']);
    // Recorded under a name derived from the pod and the note: the second pass conflicts, quietly.
    await reconcileTunnel(ctx, 'shop/orders');
    expect([...client.objects.keys()].filter((k) => k.startsWith(`${EVENTS}/`))).toHaveLength(2);
  });

  describe('a sidecar /status over HTTP', () => {
    let server: Server | undefined;
    afterEach(
      () =>
        new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve()))),
    );

    async function serve(body: unknown): Promise<string> {
      const s = createServer((_req, res) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(body));
      });
      server = s;
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      return `127.0.0.1:${(s.address() as AddressInfo).port}`;
    }

    const read = (address: string): SidecarStatusFetcher =>
      httpSidecarStatus({
        resolve: () => ({ host: '127.0.0.1', port: Number(address.split(':')[1]) }),
        token: () => undefined,
        metrics: createOperatorMetrics(new Registry()),
        logger: pino({ level: 'silent' }),
      });

    const body = (path: string) => ({
      peerId: 'me',
      ready: true,
      forwards: [
        { name: 'db', providers: [{ peer: 'x', connected: true, path, healthy: true, failures: 0 }] },
      ],
    });

    it('is read when it keeps the contract', async () => {
      const address = await serve(body('hole_punched'));
      const { client, caches, ctx, count } = setup(read(address));
      caches.tunnels.put(tunnelFixture(1));
      caches.networks.put(network);
      caches.pods.put(pod('a'));
      await reconcileTunnel(ctx, 'shop/orders');
      const status = client.objects.get(TUNNEL_STATUS)?.status as PeerTunnel['status'];
      expect(status?.forwards).toEqual([{ name: 'db', providers: 1, path: 'hole-punched' }]);
      expect(await count('peertunnel_operator_sidecar_status_invalid_total')).toBe(0);
    });

    it('is refused, counted and logged when its path is unknown, not read as direct', async () => {
      const address = await serve(body('teleported'));
      const { client, caches, ctx, count, logs } = setup(read(address));
      caches.tunnels.put(tunnelFixture(1));
      caches.networks.put(network);
      caches.pods.put(pod('a'));
      await reconcileTunnel(ctx, 'shop/orders');
      const status = client.objects.get(TUNNEL_STATUS)?.status as PeerTunnel['status'];
      expect(readyOf(status)?.reason).toBe('SidecarStatusUnavailable');
      expect(status?.forwards).toEqual([{ name: 'db', providers: 0, path: 'none' }]);
      expect(await count('peertunnel_operator_sidecar_status_invalid_total')).toBe(1);
      expect(logs.filter((l) => l.event === 'sidecar_status_invalid')).toEqual([
        expect.objectContaining({ pod: 'a', namespace: 'shop', field: 'forwards[0].providers[0].path' }),
      ]);
    });
  });
});

describe('computeNetworkStatus', () => {
  const facts = (over: Partial<NetworkFacts>): NetworkFacts => ({
    network,
    swarmKey: 'ok',
    tunnels: 1,
    relayAddresses: undefined,
    relayError: undefined,
    now: new Date('2026-01-01T00:00:00Z'),
    ...over,
  });
  const reason = (f: NetworkFacts) => readyOf(computeNetworkStatus(f))?.reason;
  const noBootstrap: PeerNetwork = { ...network, spec: { ...network.spec, bootstrap: [] } };
  const relayed: PeerNetwork = { ...noBootstrap, spec: { ...noBootstrap.spec, relay: { enabled: true } } };

  it('gives the first reason that applies: key, relay failure, no bootstrap peer, ready', () => {
    expect(reason(facts({ swarmKey: 'secretMissing', relayError: new Error('x') }))).toBe(
      'SwarmKeySecretMissing',
    );
    expect(reason(facts({ swarmKey: 'keyMissing' }))).toBe('SwarmKeyMissing');
    expect(reason(facts({ relayError: new Error('forbidden') }))).toBe('RelayError');
    expect(reason(facts({ network: relayed }))).toBe('RelaysPending');
    expect(reason(facts({ network: relayed, relayAddresses: ['/ip4/192.0.2.9/tcp/4001/p2p/x'] }))).toBe(
      'Ready',
    );
    expect(reason(facts({}))).toBe('Ready');
  });

  it('publishes relay addresses, and keeps the published ones when ensuring the relays failed', () => {
    const addr = '/ip4/192.0.2.9/tcp/4001/p2p/x';
    expect(computeNetworkStatus(facts({ network: relayed, relayAddresses: [addr] })).relayAddresses).toEqual([
      addr,
    ]);
    const published = { ...relayed, status: { relayAddresses: [addr] } };
    const failed = computeNetworkStatus(facts({ network: published, relayError: new Error('quota') }));
    expect(failed.relayAddresses).toEqual([addr]);
    expect(readyOf(failed)?.reason).toBe('RelayError');
    expect(
      computeNetworkStatus(facts({ network: published, relayAddresses: [] })).relayAddresses,
    ).toBeUndefined();
  });

  it('moves lastTransitionTime only when the Ready status changes', () => {
    const first = computeNetworkStatus(facts({}));
    const later = computeNetworkStatus(
      facts({ network: { ...network, status: first }, tunnels: 2, now: new Date('2026-01-02T00:00:00Z') }),
    );
    const c0 = first.conditions?.[0];
    const c1 = later.conditions?.[0];
    expect(c1?.message).not.toBe(c0?.message);
    expect(c1?.lastTransitionTime).toBe(c0?.lastTransitionTime);
  });
});

describe('reconcileNetwork', () => {
  const DEPLOYMENTS = '/apis/apps/v1/namespaces/shop/deployments';
  const SERVICES = '/api/v1/namespaces/shop/services';

  it('without relays: removes none, writes the status and one event; then only looks', async () => {
    const { client, caches, ctx } = setup();
    caches.networks.put(network);
    expect(await reconcileNetwork(ctx, 'shop/mesh')).toEqual({ requeueAfterMs: 300_000 });
    expect(client.take()).toEqual([
      `GET ${SECRET}`,
      `GET ${DEPLOYMENTS}`,
      `GET ${SERVICES}`,
      `PATCH ${NETWORK_STATUS}`,
      `POST ${EVENTS}`,
    ]);
    settle(client, caches.networks, network, NETWORK_STATUS);
    await reconcileNetwork(ctx, 'shop/mesh');
    expect(client.take()).toEqual([`GET ${SECRET}`, `GET ${DEPLOYMENTS}`, `GET ${SERVICES}`]);
    expect(client.eventsPosted().map((e) => e.reason)).toEqual(['Ready']);
  });

  it('with a relay: identity, Service, Deployment, clean-up, then status and event, in that order', async () => {
    const { client, caches, ctx } = setup();
    const withRelay: PeerNetwork = {
      ...network,
      metadata: { ...network.metadata, uid: 'u1' },
      spec: {
        swarmKeySecretRef: { name: 'k' },
        relay: { enabled: true, announce: ['/ip4/203.0.113.10/tcp/4001'] },
      },
    };
    caches.networks.put(withRelay);
    await reconcileNetwork(ctx, 'shop/mesh');
    expect(client.take()).toEqual([
      `GET ${SECRET}`,
      'GET /api/v1/namespaces/shop/secrets/mesh-relay-identity',
      'POST /api/v1/namespaces/shop/secrets',
      `POST ${EVENTS}`,
      // Each relay object is looked at before it is applied: one not ours is never taken over.
      `GET ${SERVICES}/mesh-relay-0`,
      `PATCH ${SERVICES}/mesh-relay-0`,
      `GET ${DEPLOYMENTS}/mesh-relay-0`,
      `PATCH ${DEPLOYMENTS}/mesh-relay-0`,
      `GET ${DEPLOYMENTS}`,
      `GET ${SERVICES}`,
      `PATCH ${NETWORK_STATUS}`,
      `POST ${EVENTS}`,
    ]);
    const status = client.objects.get(NETWORK_STATUS)?.status as PeerNetwork['status'];
    expect(status?.relayAddresses).toEqual([
      expect.stringMatching(/^\/ip4\/203\.0\.113\.10\/tcp\/4001\/p2p\/12D3KooW/),
    ]);
    expect(readyOf(status)?.reason).toBe('Ready');
    expect(client.eventsPosted().map((e) => e.reason)).toEqual(['RelayUpdated', 'Ready']);

    // Settled: the relay objects are applied again (idempotent), the status and events are not.
    const settled = settle(client, caches.networks, withRelay, NETWORK_STATUS);
    await reconcileNetwork(ctx, 'shop/mesh');
    expect(client.take()).toEqual([
      `GET ${SECRET}`,
      'GET /api/v1/namespaces/shop/secrets/mesh-relay-identity',
      `GET ${SERVICES}/mesh-relay-0`,
      `PATCH ${SERVICES}/mesh-relay-0`,
      `GET ${DEPLOYMENTS}/mesh-relay-0`,
      `PATCH ${DEPLOYMENTS}/mesh-relay-0`,
      `GET ${DEPLOYMENTS}`,
      `GET ${SERVICES}`,
    ]);

    // The Deployment cannot be written: RelayError, the published address kept, one Warning event.
    client.forbidden.add(`PATCH ${DEPLOYMENTS}`);
    await expect(reconcileNetwork(ctx, 'shop/mesh')).rejects.toMatchObject({
      name: 'ReconcileError',
      workError: expect.objectContaining({ status: 403 }),
    });
    const failed = client.objects.get(NETWORK_STATUS)?.status as PeerNetwork['status'];
    expect(readyOf(failed)?.reason).toBe('RelayError');
    expect(failed?.relayAddresses).toEqual(settled.status?.relayAddresses);
    expect(client.eventsPosted().map((e) => [e.type, e.reason])).toEqual([
      ['Normal', 'RelayUpdated'],
      ['Normal', 'Ready'],
      ['Warning', 'RelayError'],
    ]);
  });

  it('leaves a relay Service it does not own alone, and says so in Ready', async () => {
    const { client, caches, ctx } = setup();
    const withRelay: PeerNetwork = {
      ...network,
      metadata: { ...network.metadata, uid: 'u1' },
      spec: {
        swarmKeySecretRef: { name: 'k' },
        relay: { enabled: true, announce: ['/ip4/203.0.113.10/tcp/4001'] },
      },
    };
    caches.networks.put(withRelay);
    // Someone else's Service under the relay's name: no owner reference to this network.
    const theirs = { metadata: { name: 'mesh-relay-0', namespace: 'shop', labels: { app: 'theirs' } } };
    client.objects.set(`${SERVICES}/mesh-relay-0`, theirs);
    await expect(reconcileNetwork(ctx, 'shop/mesh')).rejects.toMatchObject({ name: 'ReconcileError' });
    expect(client.take()).not.toContain(`PATCH ${SERVICES}/mesh-relay-0`);
    expect(client.objects.get(`${SERVICES}/mesh-relay-0`)).toBe(theirs);
    const status = client.objects.get(NETWORK_STATUS)?.status as PeerNetwork['status'];
    expect(readyOf(status)?.reason).toBe('RelayObjectNotOwned');
  });
});
