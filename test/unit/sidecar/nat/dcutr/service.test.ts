/**
 * Two DCUtR services wired together through fakes: a relayed connection whose streams are
 * in-memory stream pairs, and dials that succeed or fail on demand. Checks the rounds, their
 * bounds, the events and when the relayed connection closes.
 */
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Connection, Libp2p, PeerId, Stream, StreamHandler, Topology } from '@libp2p/interface';
import { defaultLogger } from '@libp2p/logger';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { streamPair } from '@libp2p/utils';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import type { HolePunchEvent } from '../../../../../sidecar/nat/dcutr/events.js';
import { DCUTR_PROTOCOL } from '../../../../../sidecar/nat/dcutr/protocol.js';
import { DcutrService } from '../../../../../sidecar/nat/dcutr/service.js';

interface Dial {
  addrs: string[];
  options: Record<string, unknown>;
  responderDuringDial: boolean;
}

interface FakeNode {
  peerId: PeerId;
  ip: string;
  service: DcutrService;
  events: HolePunchEvent[];
  connections: Connection[];
  dials: Dial[];
  handler?: StreamHandler;
  topology?: Topology;
  other?: FakeNode;
  dialFails: boolean;
  known: Multiaddr[];
}

type FakeConnection = Connection & { close: jest.Mock<() => Promise<void>> };

function fakeConnection(init: {
  remotePeer: PeerId;
  remoteAddr: Multiaddr;
  direction: 'inbound' | 'outbound';
  newStream?: Connection['newStream'];
}): FakeConnection {
  const c = {
    ...init,
    status: 'open',
    streams: [] as Stream[],
    limits: undefined,
    abort: jest.fn(),
    close: jest.fn(async () => {
      c.status = 'closed';
    }),
  };
  return c as unknown as FakeConnection;
}

const nodes: FakeNode[] = [];

async function fakeNode(ip: string): Promise<FakeNode> {
  const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
  const bus = new EventTarget();
  const node = {
    peerId,
    ip,
    events: [],
    connections: [],
    dials: [],
    dialFails: false,
    known: [],
  } as unknown as FakeNode;
  node.service = new DcutrService(
    {
      peerId,
      registrar: {
        handle: async (_p, handler) => {
          node.handler = handler;
        },
        unhandle: async () => undefined,
        register: async (_p, topology) => {
          node.topology = topology;
          return 'topology';
        },
        unregister: () => undefined,
      },
      connectionManager: {
        getConnections: (peer) =>
          node.connections.filter((c) => peer === undefined || c.remotePeer.equals(peer)),
        openConnection: async (addrs, options = {}) => {
          const first = addrs[0] as Multiaddr;
          node.dials.push({
            addrs: addrs.map(String),
            options: { ...options },
            responderDuringDial: node.service.isResponderDial(first),
          });
          if (node.dialFails) throw new Error('no SYN-ACK');
          const other = node.other as FakeNode;
          const c = fakeConnection({ remotePeer: other.peerId, remoteAddr: first, direction: 'outbound' });
          node.connections.push(c);
          bus.dispatchEvent(new CustomEvent('connection:open', { detail: c }));
          return c;
        },
      },
      addressManager: { getAddresses: () => [multiaddr(`/ip4/${ip}/tcp/4001/p2p/${peerId}`)] },
      peerStore: {
        get: async () => ({ addresses: node.known.map((m) => ({ multiaddr: m, isCertified: false })) }),
      } as never,
      transportManager: { dialTransportForMultiaddr: () => ({}) },
      events: bus as unknown as Pick<Libp2p, 'addEventListener' | 'removeEventListener'>,
      logger: defaultLogger(),
    },
    {
      isPublic: (addr) => addr.startsWith('198.51.100.'),
      candidates: () => [],
      timeoutMs: 500,
      tries: 3,
      maxFailedRounds: 3,
      windowMs: 60_000,
      retryDelayMs: 20,
      relayDrainMs: 10_000,
      isPayloadStream: (s) => s.protocol?.startsWith('/x/') === true,
    },
  );
  node.service.subscribe((e) => node.events.push(e));
  await node.service.start();
  nodes.push(node);
  return node;
}

/** A dialled B through a relay: B's side is inbound. Streams B opens reach A's handler. */
function relay(a: FakeNode, b: FakeNode) {
  a.other = b;
  b.other = a;
  const circuit = (to: PeerId) => multiaddr(`/ip4/198.51.100.1/tcp/4001/p2p/${to}/p2p-circuit/p2p/${to}`);
  const atA = fakeConnection({ remotePeer: b.peerId, remoteAddr: circuit(b.peerId), direction: 'outbound' });
  const atB = fakeConnection({
    remotePeer: a.peerId,
    remoteAddr: circuit(a.peerId),
    direction: 'inbound',
    newStream: (async () => {
      const [mine, theirs] = await streamPair({ protocol: DCUTR_PROTOCOL });
      void a.handler?.(theirs, atA);
      return mine;
    }) as Connection['newStream'],
  });
  a.connections.push(atA);
  b.connections.push(atB);
  b.topology?.onConnect?.(a.peerId, atB);
  return { atA, atB };
}

async function until<T>(what: () => T | undefined, ms = 3_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = what();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const kinds = (n: FakeNode) =>
  n.events.map((e) =>
    e.type === 'attempt' ? `attempt:${e.result}` : e.type === 'upgraded' ? `upgraded:${e.path}` : e.type,
  );

afterEach(async () => {
  await Promise.all(nodes.splice(0).map((n) => n.service.stop()));
});

describe('DCUtR service', () => {
  it('punches: B dials as responder, both report hole_punched, relayed connections close', async () => {
    const a = await fakeNode('198.51.100.10');
    const b = await fakeNode('198.51.100.20');
    const { atA, atB } = relay(a, b);
    await until(() => (kinds(b).includes('attempt:success') ? true : undefined));
    await until(() =>
      kinds(a).filter((k) => k === 'upgraded:hole_punched').length === 2 ? true : undefined,
    );
    expect(kinds(b)).toEqual([
      'upgraded:hole_punched',
      'relay_closed',
      'attempt:success',
      'upgraded:hole_punched',
    ]);
    expect(kinds(a)).toEqual(['upgraded:hole_punched', 'relay_closed', 'upgraded:hole_punched']);
    expect(b.dials).toEqual([
      {
        addrs: [`/ip4/198.51.100.10/tcp/4001/p2p/${a.peerId}`],
        options: expect.objectContaining({ initiator: false, priority: 100, force: true }),
        responderDuringDial: true,
      },
    ]);
    expect(a.dials[0]?.options).not.toHaveProperty('initiator');
    expect(b.service.isResponderDial(multiaddr(b.dials[0]?.addrs[0] ?? ''))).toBe(false);
    expect(atA.close).toHaveBeenCalledTimes(1);
    expect(atB.close).toHaveBeenCalledTimes(1);
  });

  it('keeps the relayed connection open while a tunnel stream is on it', async () => {
    const a = await fakeNode('198.51.100.10');
    const b = await fakeNode('198.51.100.20');
    const tunnel = { protocol: '/x/peertunnel/db/1.0.0' } as Stream;
    // Pushed before the round's first step settles: the punch finds them there.
    const { atA, atB } = relay(a, b);
    atA.streams.push(tunnel);
    atB.streams.push(tunnel);
    await until(() => (kinds(b).includes('attempt:success') ? true : undefined));
    expect(atB.close).not.toHaveBeenCalled();
    expect(kinds(b)).not.toContain('relay_closed');
  });

  it('stops after three failed rounds of three tries; A refuses after nine failed answers', async () => {
    const a = await fakeNode('198.51.100.10');
    const b = await fakeNode('198.51.100.20');
    a.dialFails = true;
    b.dialFails = true;
    const { atB } = relay(a, b);
    await until(() => (kinds(b).filter((k) => k === 'attempt:failure').length === 3 ? true : undefined));
    await new Promise((r) => setTimeout(r, 200));
    expect(kinds(b)).toEqual(['attempt:failure', 'attempt:failure', 'attempt:failure']);
    expect(b.dials).toHaveLength(9);
    expect(b.service.gaveUp()).toEqual([a.peerId.toString()]);
    expect(atB.close).not.toHaveBeenCalled();
    const failure = b.events[0];
    expect(failure?.type === 'attempt' && failure.error).toBe('no SYN-ACK');

    // A new relayed connection from the same peer: given up, told once.
    b.topology?.onConnect?.(a.peerId, atB);
    await until(() => (kinds(b).includes('attempt:gave_up') ? true : undefined));

    // A counted each failed answer: a tenth CONNECT is refused outright.
    await until(() => (a.dials.length === 9 ? true : undefined));
    const [, theirs] = await streamPair();
    const abort = jest.spyOn(theirs, 'abort');
    await a.handler?.(theirs, a.connections[0] as Connection);
    expect(abort).toHaveBeenCalledWith(expect.objectContaining({ name: 'HolePunchSetupError' }));
    expect(kinds(a)).toEqual(['attempt:gave_up']);
  });

  it('upgrades directly to a public address the peer announced, without a punch', async () => {
    const a = await fakeNode('198.51.100.10');
    const b = await fakeNode('198.51.100.20');
    b.known = [multiaddr('/ip4/10.0.0.5/tcp/4001'), multiaddr('/ip4/198.51.100.10/tcp/4001')];
    const handler = jest.fn<StreamHandler>();
    relay(a, b);
    a.handler = handler;
    await until(() => (kinds(b).includes('attempt:success') ? true : undefined));
    expect(kinds(b)).toEqual(['relay_closed', 'attempt:success', 'upgraded:direct']);
    expect(b.dials).toEqual([
      {
        addrs: [`/ip4/198.51.100.10/tcp/4001/p2p/${a.peerId}`],
        options: { signal: expect.anything(), force: true },
        responderDuringDial: false,
      },
    ]);
    expect(handler).not.toHaveBeenCalled();
  });

  it('leaves outbound relayed connections and direct ones alone', async () => {
    const a = await fakeNode('198.51.100.10');
    const b = await fakeNode('198.51.100.20');
    b.other = a;
    const outbound = fakeConnection({
      remotePeer: a.peerId,
      remoteAddr: multiaddr(`/ip4/198.51.100.1/tcp/4001/p2p/${a.peerId}/p2p-circuit/p2p/${a.peerId}`),
      direction: 'outbound',
    });
    const direct = fakeConnection({
      remotePeer: a.peerId,
      remoteAddr: multiaddr('/ip4/198.51.100.10/tcp/4001'),
      direction: 'inbound',
    });
    b.topology?.onConnect?.(a.peerId, outbound);
    b.topology?.onConnect?.(a.peerId, direct);
    await new Promise((r) => setTimeout(r, 50));
    expect(b.events).toEqual([]);
    expect(b.dials).toEqual([]);
  });
});
