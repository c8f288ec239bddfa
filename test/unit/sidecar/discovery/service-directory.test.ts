/**
 * ServiceDirectory's side of provider selection, with a stub libp2p (an EventTarget for identify, a
 * DHT that finds nothing): identify adds a provider and tells the forwards once; a provider seen
 * again keeps its backoff; a peer that does not speak the protocol is no provider.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { Registry } from 'prom-client';
import { createSidecarMetrics } from '../../../../sidecar/admin/metrics.js';
import {
  type DirectoryEvent,
  ServiceDirectory,
  type ServiceDirectoryComponents,
  serviceProtocol,
} from '../../../../sidecar/discovery/service-directory.js';
import { silentLogger } from '../../../../sidecar/node/logger.js';

const newPeer = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'));

type FindProviders = () => AsyncGenerator<{ id: PeerId; multiaddrs: [] }>;

async function directory(
  // By default the DHT knows no provider: only identify brings them here.
  findProviders: FindProviders = async function* () {},
): Promise<{ dir: ServiceDirectory; events: EventTarget }> {
  const events = new EventTarget();
  const self = await newPeer();
  const libp2p = {
    peerId: self,
    contentRouting: { findProviders },
    peerStore: { get: async () => ({ addresses: [] }), merge: async () => undefined },
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events),
    getConnections: () => [],
    getMultiaddrs: () => [],
  };
  const dir = new ServiceDirectory({
    libp2p: libp2p as unknown as ServiceDirectoryComponents['libp2p'],
    dht: { provide: async function* () {} } as unknown as ServiceDirectoryComponents['dht'],
    metrics: createSidecarMetrics(new Registry()),
    logger: silentLogger(),
  });
  await dir.start([], ['db']);
  stops.push(() => dir.stop());
  return { dir, events };
}

const identify = (events: EventTarget, peerId: PeerId, protocols: string[]) =>
  events.dispatchEvent(new CustomEvent('peer:identify', { detail: { peerId, protocols } }));

const stops: Array<() => void> = [];
afterEach(() => {
  for (const s of stops.splice(0)) s();
});

describe('ServiceDirectory: providers from identify', () => {
  it('adds a peer that speaks the service protocol and tells the forwards once', async () => {
    const { dir, events } = await directory();
    const seen: DirectoryEvent[] = [];
    dir.subscribe((e) => seen.push(e));
    const peer = await newPeer();
    identify(events, peer, ['/ipfs/id/1.0.0', serviceProtocol('db')]);
    identify(events, peer, [serviceProtocol('db')]);
    expect(
      dir
        .pool('db')
        ?.list()
        .map((p) => p.peer),
    ).toEqual([peer.toString()]);
    expect(seen).toEqual([{ type: 'providers_found', service: 'db' }]);
  });

  it('ignores a peer that does not speak the service protocol', async () => {
    const { dir, events } = await directory();
    identify(events, await newPeer(), [serviceProtocol('other'), '/ipfs/id/1.0.0']);
    expect(dir.pool('db')?.size).toBe(0);
  });

  it('keeps a failed provider in backoff when identify brings it again', async () => {
    const { dir, events } = await directory();
    const peer = await newPeer();
    identify(events, peer, [serviceProtocol('db')]);
    const pool = dir.pool('db');
    pool?.failed(peer.toString(), Date.now());
    const before = pool?.list()[0];
    identify(events, peer, [serviceProtocol('db')]);
    expect(pool?.list()[0]).toMatchObject({ failures: 1, retryAt: before?.retryAt });
    const now = pool?.select(Date.now());
    expect([...(now?.connected ?? []), ...(now?.unconnected ?? [])]).toHaveLength(0);
    expect(now?.backedOff).toEqual([peer.toString()]);
  });
});

describe('ServiceDirectory: no idle wait for the first provider', () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('looks up at once when a peer is identified while a forward has no provider', async () => {
    let lookups = 0;
    const { events } = await directory(async function* () {
      lookups++;
      yield* []; // finds nothing
    });
    await sleep(10);
    expect(lookups).toBe(1); // the one at start, before any peer was connected
    // A DHT peer (the bootstrap node) is connected and identified: ask it now, not at the next retry.
    identify(events, await newPeer(), ['/ipfs/id/1.0.0', '/peertunnel/kad/1.0.0']);
    await sleep(10);
    expect(lookups).toBe(2);
  });

  it('asks again within a few hundred milliseconds while nothing was found', async () => {
    const provider = await newPeer();
    let lookups = 0;
    const { dir } = await directory(async function* () {
      lookups++;
      if (lookups >= 3) yield { id: provider, multiaddrs: [] };
    });
    const started = Date.now();
    expect(await dir.waitForProvider('db', 1_500)).toBe(true);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('withdraws a provider whose identify stops listing the name, never one whose identify never did', async () => {
    const fromDht = await newPeer();
    const { dir, events } = await directory(async function* () {
      yield { id: fromDht, multiaddrs: [] };
    });
    expect(await dir.waitForProvider('db', 1_000)).toBe(true);
    // Found in the DHT only (kubo's `ipfs p2p listen` serves a name its identify does not list).
    identify(events, fromDht, ['/ipfs/id/1.0.0']);
    expect(dir.pool('db')?.has(fromDht.toString())).toBe(true);
    // One that listed the name and then no longer does (its target refuses) leaves the pool.
    const listed = await newPeer();
    identify(events, listed, [serviceProtocol('db')]);
    expect(dir.pool('db')?.has(listed.toString())).toBe(true);
    identify(events, listed, ['/ipfs/id/1.0.0']);
    expect(dir.pool('db')?.has(listed.toString())).toBe(false);
  });
});
