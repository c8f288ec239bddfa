/**
 * reusePortTcp() in real libp2p nodes on 127.0.0.1: the remote side sees the dialer's listening
 * port, and with dials from the listening port off they still work (from ephemeral ports).
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Libp2p } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import {
  detectReusePort,
  type ReusePortTcpInit,
  reusePortTcp,
} from '../../../../sidecar/nat/reuseport-tcp.js';

const nodes: Libp2p[] = [];

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
});

async function node(init: ReusePortTcpInit = {}): Promise<Libp2p> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [reusePortTcp(init)],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  });
  nodes.push(n);
  return n;
}

function tcpPort(ma: Multiaddr | undefined): number {
  const port = ma?.getComponents().find((c) => c.name === 'tcp')?.value;
  if (port === undefined) throw new Error(`no TCP port in ${ma?.toString()}`);
  return Number(port);
}

/** The remote address of the connection `at` has with `peer`, as `at` sees it (inbound ends land later). */
async function remoteAddrSeenBy(at: Libp2p, peer: Libp2p): Promise<Multiaddr> {
  for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
    const [conn] = at.getConnections(peer.peerId);
    if (conn !== undefined) return conn.remoteAddr;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error('no connection');
}

describe('reusePortTcp', () => {
  it.each(['bound-socket'] as const)('%s: the remote side sees the dialer listening port', async (method) => {
    expect(detectReusePort({ reusePortDial: method }).method).toBe(method);
    const warnings: Error[] = [];
    const a = await node({ reusePortDial: method, onUnavailable: (e) => warnings.push(e) });
    const b = await node({ reusePortDial: method });
    const aPort = tcpPort(a.getMultiaddrs()[0]);

    const conn = await a.dial(b.getMultiaddrs(), { signal: AbortSignal.timeout(10_000) });
    expect(conn.status).toBe('open');
    expect(tcpPort(await remoteAddrSeenBy(b, a))).toBe(aPort);
    expect(warnings).toEqual([]);

    // The reverse dial would reuse the same two ports, a 4-tuple already taken (EADDRNOTAVAIL):
    // the transport falls back to an ephemeral port, and the dial works.
    const back = await b.dial(a.getMultiaddrs(), { signal: AbortSignal.timeout(10_000), force: true });
    expect(back.status).toBe('open');
    expect(tcpPort(back.remoteAddr)).toBe(aPort);
    const bPort = tcpPort(b.getMultiaddrs()[0]);
    const seenByA = async () => a.getConnections(b.peerId).map((c) => tcpPort(c.remoteAddr));
    for (const deadline = Date.now() + 5000; (await seenByA()).length < 2 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const ports = await seenByA();
    expect(ports).toContain(bPort); // a's own dial, seen from b's listening port
    expect(ports.filter((p) => p !== bPort)).toHaveLength(1); // b's fallback dial, from an ephemeral port
  });

  it('off: dials from ephemeral ports, like @libp2p/tcp', async () => {
    const a = await node({ reusePortDial: 'off' });
    const b = await node();
    await a.dial(b.getMultiaddrs(), { signal: AbortSignal.timeout(10_000) });
    expect(tcpPort(await remoteAddrSeenBy(b, a))).not.toBe(tcpPort(a.getMultiaddrs()[0]));
  });
});
