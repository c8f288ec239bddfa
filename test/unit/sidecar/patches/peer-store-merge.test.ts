/**
 * cacheProtocolMerges on libp2p's real peer store: a repeated one-protocol merge of a tunnel
 * protocol is answered from the cache within the TTL, everything else reaches the store.
 */
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PeerId } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p, type Libp2p } from 'libp2p';
import { SERVICE_PROTOCOL_PREFIX, serviceProtocol } from '../../../../sidecar/discovery/service-directory.js';
import { cacheProtocolMerges } from '../../../../sidecar/patches/peer-store-merge.js';

const newPeer = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'));

describe('cacheProtocolMerges', () => {
  let node: Libp2p;
  let realMerges: number;
  let clock: number;

  beforeEach(async () => {
    node = await createLibp2p({ start: false });
    realMerges = 0;
    clock = 1_000_000;
    const merge = node.peerStore.merge.bind(node.peerStore);
    node.peerStore.merge = (...args) => {
      realMerges++;
      return merge(...args);
    };
    cacheProtocolMerges(node.peerStore, {
      isCached: (p) => p.startsWith(SERVICE_PROTOCOL_PREFIX),
      ttlMs: 60_000,
      now: () => clock,
    });
  });
  afterEach(async () => {
    await node.stop();
  });

  it('merges a tunnel protocol once per peer within the TTL, and the record lists it', async () => {
    const peer = await newPeer();
    const protocol = serviceProtocol('db');
    for (let i = 0; i < 5; i++) await node.peerStore.merge(peer, { protocols: [protocol] });
    expect(realMerges).toBe(1);
    expect((await node.peerStore.get(peer)).protocols).toEqual([protocol]);
  });

  it('keeps peers and protocols apart', async () => {
    const [a, b] = [await newPeer(), await newPeer()];
    await node.peerStore.merge(a, { protocols: [serviceProtocol('db')] });
    await node.peerStore.merge(b, { protocols: [serviceProtocol('db')] });
    await node.peerStore.merge(a, { protocols: [serviceProtocol('cache')] });
    expect(realMerges).toBe(3);
    expect((await node.peerStore.get(a)).protocols.sort()).toEqual(
      [serviceProtocol('cache'), serviceProtocol('db')].sort(),
    );
  });

  it('merges again once the TTL has passed', async () => {
    const peer = await newPeer();
    await node.peerStore.merge(peer, { protocols: [serviceProtocol('db')] });
    clock += 59_999;
    await node.peerStore.merge(peer, { protocols: [serviceProtocol('db')] });
    expect(realMerges).toBe(1);
    clock += 2;
    await node.peerStore.merge(peer, { protocols: [serviceProtocol('db')] });
    expect(realMerges).toBe(2);
  });

  it('passes every other merge through', async () => {
    const peer = await newPeer();
    for (let i = 0; i < 2; i++) {
      await node.peerStore.merge(peer, { protocols: ['/ipfs/id/1.0.0'] });
      await node.peerStore.merge(peer, { protocols: [serviceProtocol('db'), serviceProtocol('x')] });
      await node.peerStore.merge(peer, {
        protocols: [serviceProtocol('db')],
        multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/4001')],
      });
    }
    expect(realMerges).toBe(6);
    const record = await node.peerStore.get(peer);
    expect(record.addresses.map((a) => a.multiaddr.toString())).toEqual(['/ip4/127.0.0.1/tcp/4001']);
  });

  it('does not cache a merge that failed', async () => {
    const peer = await newPeer();
    const signal = AbortSignal.abort();
    await expect(
      node.peerStore.merge(peer, { protocols: [serviceProtocol('db')] }, { signal }),
    ).rejects.toThrow();
    await node.peerStore.merge(peer, { protocols: [serviceProtocol('db')] });
    expect(realMerges).toBe(2);
    expect((await node.peerStore.get(peer)).protocols).toEqual([serviceProtocol('db')]);
  });
});
