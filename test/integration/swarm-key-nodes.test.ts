/**
 * Swarm-key rollover between real nodes on 127.0.0.1 (real libp2p, TCP, pnet, noise, yamux): a
 * node holding the current and the next key accepts a node holding only the current key and one
 * holding only the next, reports which key each connection uses (/status and the metric), dials
 * each with a key it holds (falling back when the peer lacks the next one), and refuses and counts
 * a node holding an unrelated key.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Connection } from '@libp2p/interface';
import { parseConfig } from '../../sidecar/config/config.js';
import { generateSwarmKey } from '../../sidecar/config/swarm-key.js';
import { silentLogger } from '../../sidecar/node/logger.js';
import { PeerNode } from '../../sidecar/node/peer-node.js';
import { eventually, parseMetric } from '../helpers/node-process.js';

const env = {
  ...process.env,
  PT_KEY_A: generateSwarmKey(),
  PT_KEY_B: generateSwarmKey(),
  PT_KEY_X: generateSwarmKey(),
};
const nodes: PeerNode[] = [];

async function start(current: string, next?: string): Promise<PeerNode> {
  const config = parseConfig({
    swarmKey: { env: current },
    ...(next === undefined ? {} : { nextSwarmKey: { env: next } }),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    admin: { listen: '127.0.0.1:0' },
    nat: { holePunch: false },
  });
  // Each node reads (and so deletes) its env vars from a copy of its own.
  const n = await PeerNode.start({ config, logger: silentLogger(), env: { ...env } });
  nodes.push(n);
  return n;
}

const metrics = async (n: PeerNode) => n.registry.metrics();
const keyOfPeer = (n: PeerNode, peer: PeerNode) =>
  n.status().peers.find((p) => p.peer === peer.libp2p.peerId.toString())?.swarmKey;
/** The key `n` reports for its connection to `peer`, once the connection is there (the dialer knows first). */
const keyOnceConnected = (n: PeerNode, peer: PeerNode) =>
  eventually(async () => keyOfPeer(n, peer), 10_000, 'the connection on the accepting side');

describe('a node holding the current and the next swarm key', () => {
  let both: PeerNode;
  let onlyCurrent: PeerNode;
  let onlyNext: PeerNode;
  let stranger: PeerNode;

  beforeAll(async () => {
    both = await start('PT_KEY_A', 'PT_KEY_B');
    onlyCurrent = await start('PT_KEY_A');
    onlyNext = await start('PT_KEY_B');
    stranger = await start('PT_KEY_X');
  });

  afterAll(async () => {
    for (const n of nodes.reverse()) await n.stop();
  });

  it('accepts a node holding only the current key, and says it uses the current key', async () => {
    const c: Connection = await onlyCurrent.libp2p.dial(both.libp2p.getMultiaddrs());
    expect(c.status).toBe('open');
    expect(await keyOnceConnected(both, onlyCurrent)).toBe('current');
    expect(keyOfPeer(onlyCurrent, both)).toBe('current');
  });

  it('accepts a node holding only the next key, and says it uses the next key', async () => {
    await onlyNext.libp2p.dial(both.libp2p.getMultiaddrs());
    expect(await keyOnceConnected(both, onlyNext)).toBe('next');
    // The next key is that node's current one.
    expect(keyOfPeer(onlyNext, both)).toBe('current');
  });

  it('counts its connections by key, in /status and the metric', async () => {
    expect(both.status().swarmKey).toEqual({ next: true, connections: { current: 1, next: 1 } });
    const text = await metrics(both);
    expect(parseMetric(text, 'peertunnel_connections_by_swarm_key', { swarm_key: 'current' })).toBe(1);
    expect(parseMetric(text, 'peertunnel_connections_by_swarm_key', { swarm_key: 'next' })).toBe(1);
    expect(onlyCurrent.status().swarmKey).toEqual({ next: false, connections: { current: 1, next: 0 } });
  });

  it('dials with the next key, and falls back to the current one for a node without it', async () => {
    await both.libp2p.hangUp(onlyCurrent.libp2p.peerId);
    await both.libp2p.hangUp(onlyNext.libp2p.peerId);
    await both.libp2p.dial(onlyNext.libp2p.getMultiaddrs());
    expect(keyOfPeer(both, onlyNext)).toBe('next');
    expect(parseMetric(await metrics(both), 'peertunnel_swarm_key_fallbacks_total', { from: 'next' })).toBe(
      0,
    );
    await both.libp2p.dial(onlyCurrent.libp2p.getMultiaddrs());
    expect(keyOfPeer(both, onlyCurrent)).toBe('current');
    expect(parseMetric(await metrics(both), 'peertunnel_swarm_key_fallbacks_total', { from: 'next' })).toBe(
      1,
    );
    // The node without the next key refused the first attempt and counted it.
    expect(
      parseMetric(await metrics(onlyCurrent), 'peertunnel_inbound_refused_total', { reason: 'swarm_key' }),
    ).toBe(1);
  });

  it('refuses a node holding an unrelated key, and counts it', async () => {
    const before = parseMetric(await metrics(both), 'peertunnel_inbound_refused_total', {
      reason: 'swarm_key',
    });
    await expect(stranger.libp2p.dial(both.libp2p.getMultiaddrs())).rejects.toThrow();
    await eventually(async () => {
      const n = parseMetric(await metrics(both), 'peertunnel_inbound_refused_total', {
        reason: 'swarm_key',
      });
      return n === before + 1 ? n : undefined;
    });
    expect(both.libp2p.getConnections(stranger.libp2p.peerId)).toEqual([]);
    expect(keyOfPeer(both, stranger)).toBeUndefined();
  });
});
