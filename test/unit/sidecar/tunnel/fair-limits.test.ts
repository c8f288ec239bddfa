/** What one member may hold: streams, DHT records and addresses, relay reservations. */
import { describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Connection, PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { Key } from 'interface-datastore';
import {
  BoundedDatastore,
  dhtAddressFilter,
  MAX_RECORDS_PER_PEER,
} from '../../../../sidecar/discovery/dht-limits.js';
import { AddressPolicy } from '../../../../sidecar/nat/address-policy.js';
import {
  type GuardedReservation,
  RelayGuard,
  type RelayGuardEvent,
} from '../../../../sidecar/nat/relay-guard.js';
import { StreamLimiter, streamLimits } from '../../../../sidecar/tunnel/stream-limits.js';

describe('stream limits', () => {
  it('derive from the memory limit, one peer getting at most half, unless configured', () => {
    expect(streamLimits({ memoryMiB: 256, reservationsPerAddress: 128 })).toEqual({
      streams: 307,
      streamsPerPeer: 153,
    });
    expect(streamLimits({ memoryMiB: 1024, reservationsPerAddress: 128 }).streams).toBe(2764);
    expect(streamLimits({ memoryMiB: 64, reservationsPerAddress: 128 })).toEqual({
      streams: 16,
      streamsPerPeer: 8,
    });
    expect(
      streamLimits({ memoryMiB: 256, streams: 10, streamsPerPeer: 50, reservationsPerAddress: 128 }),
    ).toEqual({ streams: 10, streamsPerPeer: 10 });
  });

  it('refuse a peer at its share and everyone at the total, and free slots on release', () => {
    const l = new StreamLimiter({ streams: 3, streamsPerPeer: 2 });
    expect(l.acquire('a')).toBeUndefined();
    expect(l.acquire('a')).toBeUndefined();
    expect(l.acquire('a')).toBe('peer_limit');
    expect(l.acquire('b')).toBeUndefined();
    expect(l.acquire('c')).toBe('total_limit');
    l.release('a');
    expect(l.acquire('c')).toBeUndefined();
    expect(l.heldBy('a')).toBe(1);
    expect(l.active).toBe(3);
  });
});

describe('DHT bounds', () => {
  it('store at most MAX_RECORDS_PER_PEER provider records of one peer, counting refusals', () => {
    const ds = new BoundedDatastore();
    const refused: string[] = [];
    ds.onRefused((reason, peer) => refused.push(`${reason}:${peer}`));
    const put = (cid: number, peer: string) =>
      ds.put(new Key(`/dht/provider/c${cid}/${peer}`), Uint8Array.of(1));
    for (let i = 0; i < MAX_RECORDS_PER_PEER; i++) put(i, 'greedy');
    expect(() => put(MAX_RECORDS_PER_PEER, 'greedy')).toThrow('records_per_peer');
    put(0, 'greedy'); // a refresh of a record it holds is no new record
    put(0, 'other');
    expect(refused).toEqual(['records_per_peer:greedy']);
    ds.delete(new Key('/dht/provider/c1/greedy'));
    put(MAX_RECORDS_PER_PEER, 'greedy');
  });

  it('keep only addresses the node may dial', () => {
    const policy = new AddressPolicy();
    const info = {
      id: undefined as unknown as PeerId,
      multiaddrs: [
        '/ip4/203.0.113.7/tcp/4001',
        '/ip4/10.1.2.3/tcp/4001',
        '/ip4/169.254.169.254/tcp/80',
        '/ip4/0.0.0.0/tcp/4001',
        '/ip4/224.0.0.1/tcp/4001',
        '/ip6/fe80::1/tcp/4001',
        '/ip4/127.0.0.1/tcp/6379',
        '/dns4/relay.example.net/tcp/4001',
      ].map((a) => multiaddr(a)),
    };
    const kept = (loopback: boolean) =>
      dhtAddressFilter(policy, loopback)(info).multiaddrs.map((a) => a.toString());
    expect(kept(false)).toEqual([
      '/ip4/203.0.113.7/tcp/4001',
      '/ip4/10.1.2.3/tcp/4001',
      '/dns4/relay.example.net/tcp/4001',
    ]);
    expect(kept(true)).toContain('/ip4/127.0.0.1/tcp/6379');
    const many = {
      ...info,
      multiaddrs: Array.from({ length: 40 }, (_, i) => multiaddr(`/ip4/10.0.0.${i}/tcp/1`)),
    };
    expect(dhtAddressFilter(policy, false)(many).multiaddrs).toHaveLength(16);
  });
});

describe('relay guard', () => {
  const peer = async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'));

  it('refuses a new reservation from an address at its limit, allows refreshes, drops a disconnected peer', async () => {
    const [a, b, c] = [await peer(), await peer(), await peer()];
    const ip = new Map<string, string>([
      [a.toString(), '/ip4/127.0.0.2/tcp/1'],
      [b.toString(), '/ip4/127.0.0.2/tcp/2'],
      [c.toString(), '/ip4/127.0.0.3/tcp/3'],
    ]);
    const open = new Set([a.toString(), b.toString(), c.toString()]);
    const conn = (p: PeerId) =>
      ({
        status: 'open',
        remoteAddr: multiaddr(ip.get(p.toString()) ?? ''),
        remotePeer: p,
      }) as unknown as Connection;
    const listeners: Array<(e: CustomEvent<Connection>) => void> = [];
    const node = {
      getConnections: (p?: PeerId) => (p !== undefined && open.has(p.toString()) ? [conn(p)] : []),
      addEventListener: (_: string, l: (e: CustomEvent<Connection>) => void) => listeners.push(l),
      removeEventListener: () => undefined,
    };
    const held = new Map<string, GuardedReservation>();
    let cleared = 0;
    const reservations = {
      has: (p: PeerId) => held.has(p.toString()),
      get: (p: PeerId) => held.get(p.toString()),
      delete: (p: PeerId) => void held.delete(p.toString()),
      values: () => held.values(),
    };
    const guard = new RelayGuard(1);
    const events: RelayGuardEvent[] = [];
    guard.subscribe((e) => events.push(e));
    guard.attach(node as never, reservations);
    expect(guard.denyInboundRelayReservation(a)).toBe(false);
    held.set(a.toString(), {
      addr: multiaddr(ip.get(a.toString()) ?? ''),
      signal: { clear: () => cleared++ },
    });
    expect(guard.denyInboundRelayReservation(a)).toBe(false); // a refresh
    expect(guard.denyInboundRelayReservation(b)).toBe(true); // same address, new peer
    expect(guard.denyInboundRelayReservation(c)).toBe(false); // another address
    expect(events).toEqual([{ type: 'refused', reason: 'per_address', peer: b.toString(), ip: '127.0.0.2' }]);
    open.delete(a.toString());
    for (const l of listeners) l(new CustomEvent('connection:close', { detail: conn(a) }));
    expect(held.has(a.toString())).toBe(false);
    expect(cleared).toBe(1);
    expect(guard.denyInboundRelayReservation(b)).toBe(false);
  });
});
