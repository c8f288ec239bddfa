/**
 * The /status contract end to end in one process: a relay, an exposer and a forwarder on
 * 127.0.0.1 (real libp2p, real admin HTTP servers), and the forwarder's /status fetched by the
 * operator's own reader. What the node writes must parse, and its provider's path must map to the
 * PeerTunnel spelling; a field renamed on either side fails here.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { tunnelPathOf } from '../../contracts/paths.js';
import type { SidecarReport } from '../../contracts/sidecar-status.js';
import { httpSidecarStatus } from '../../operator/controller/sidecar-client.js';
import { createOperatorMetrics } from '../../operator/metrics.js';
import { type NodeConfigInput, parseConfig } from '../../sidecar/config/config.js';
import { generateSwarmKey } from '../../sidecar/config/swarm-key.js';
import { silentLogger } from '../../sidecar/node/logger.js';
import { PeerNode } from '../../sidecar/node/peer-node.js';
import { freePort } from './operator-harness.js';

const KEY = 'PEERTUNNEL_CONTRACT_TEST_KEY';
const env = { ...process.env, [KEY]: generateSwarmKey() };
const nodes: PeerNode[] = [];

async function start(extra: Partial<NodeConfigInput>): Promise<PeerNode> {
  const config = parseConfig({
    swarmKey: { env: KEY },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    admin: { listen: '127.0.0.1:0' },
    ...extra,
  });
  const n = await PeerNode.start({ config, logger: silentLogger(), env });
  nodes.push(n);
  return n;
}

/** The operator's own /status reader, pointed at a node's admin server on 127.0.0.1. */
function readerOf(node: PeerNode) {
  return httpSidecarStatus({
    resolve: () => ({ host: '127.0.0.1', port: node.admin?.port ?? 0 }),
    token: () => undefined,
    metrics: createOperatorMetrics(new Registry()),
    logger: silentLogger(),
  });
}

describe('sidecar /status as the operator reads it', () => {
  let forwarder: PeerNode;
  let exposer: PeerNode;

  beforeAll(async () => {
    const relay = await start({ role: 'relay' });
    const bootstrap = relay.libp2p.getMultiaddrs().map(String);
    exposer = await start({ bootstrap, expose: [{ name: 'db', port: 5432 }] });
    forwarder = await start({ bootstrap, forward: [{ name: 'db', localPort: await freePort() }] });
  });

  afterAll(async () => {
    for (const n of nodes.reverse()) await n.stop();
  });

  it('parses, with the exposer as a connected provider on a known path', async () => {
    const read = readerOf(forwarder);
    const pod: V1Pod = { metadata: { name: 'forwarder' } };
    const deadline = Date.now() + 30_000;
    let report: SidecarReport | undefined;
    for (;;) {
      report = await read(pod);
      const p = report?.forwards[0]?.providers.find((x) => x.peer === exposer.libp2p.peerId.toString());
      if (p?.connected === true || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(report?.peerId).toBe(forwarder.libp2p.peerId.toString());
    const provider = report?.forwards[0]?.providers[0];
    expect(report?.forwards.map((f) => f.name)).toEqual(['db']);
    expect(provider).toEqual({
      peer: exposer.libp2p.peerId.toString(),
      connected: true,
      path: 'direct',
      healthy: true,
      failures: 0,
    });
    expect(provider?.path === null || provider === undefined ? undefined : tunnelPathOf(provider.path)).toBe(
      'direct',
    );
    const exposed = await readerOf(exposer)(pod);
    expect(exposed?.exposes).toEqual([{ name: 'db' }]);
  });
});
