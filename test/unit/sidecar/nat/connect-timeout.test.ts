/**
 * withConnectTimeout(): which addresses get the short connect timeout, that a connect which never
 * completes is given up after it (a fake connect step that only an abort ends), and, with real
 * libp2p nodes on 127.0.0.1, that a connection made within it outlives it.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Libp2p, Transport } from '@libp2p/interface';
import type { TCPComponents, TCPDialOptions } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { AddressPolicy } from '../../../../sidecar/nat/address-policy.js';
import {
  ConnectTimeoutError,
  connectTimeoutFor,
  connectWithin,
  UnreachableAddresses,
  withConnectTimeout,
} from '../../../../sidecar/nat/connect-timeout.js';
import { PRIVATE_CONNECT_TIMEOUT_MS } from '../../../../sidecar/nat/constants.js';
import { reusePortTcp } from '../../../../sidecar/nat/reuseport-tcp.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A connect that settles only by abort, with the reason it was aborted for. */
const neverConnects = (signal: AbortSignal): Promise<never> =>
  new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

describe('connectTimeoutFor', () => {
  it('bounds private, CGNAT and loopback addresses and leaves public ones to the dial', () => {
    const internet = new AddressPolicy();
    const at = (a: string, p = internet) => connectTimeoutFor(multiaddr(a), p);
    expect(at('/ip4/10.244.1.5/tcp/4001')).toBe(PRIVATE_CONNECT_TIMEOUT_MS);
    expect(at('/ip4/100.64.0.9/tcp/4001')).toBe(PRIVATE_CONNECT_TIMEOUT_MS);
    expect(at('/ip4/127.0.0.1/tcp/4001')).toBe(PRIVATE_CONNECT_TIMEOUT_MS);
    expect(at('/ip6/fd00::5/tcp/4001')).toBe(PRIVATE_CONNECT_TIMEOUT_MS);
    expect(at('/ip4/8.8.8.8/tcp/4001')).toBeUndefined();
    expect(at('/ip6/2606:4700::1111/tcp/4001')).toBeUndefined();
    expect(at('/dns4/relay.example.com/tcp/4001')).toBeUndefined();
    // A network whose sites meet on other ranges: those are public, everything else is not.
    const lab = new AddressPolicy(['203.0.113.0/24', '10.20.0.0/16']);
    expect(at('/ip4/10.20.3.4/tcp/4001', lab)).toBeUndefined();
    expect(at('/ip4/198.18.1.10/tcp/4001', lab)).toBe(PRIVATE_CONNECT_TIMEOUT_MS);
  });
});

describe('connectWithin', () => {
  it('gives a connect that never completes up after the timeout', async () => {
    const t0 = Date.now();
    await expect(connectWithin(neverConnects, new AbortController().signal, 100)).rejects.toBeInstanceOf(
      ConnectTimeoutError,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(95);
  });

  it('reports a timeout as such even when the connect step rejects with its own AbortError', async () => {
    const likeTcp = (signal: AbortSignal): Promise<never> =>
      new Promise((_, reject) =>
        signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')), {
          once: true,
        }),
      );
    await expect(connectWithin(likeTcp, new AbortController().signal, 50)).rejects.toBeInstanceOf(
      ConnectTimeoutError,
    );
  });

  it("passes the dial's own abort on, with its reason", async () => {
    const outer = new AbortController();
    const connecting = connectWithin(neverConnects, outer.signal, 10_000);
    outer.abort(new Error('dial aborted'));
    await expect(connecting).rejects.toThrow('dial aborted');
  });

  it('never aborts the signal of a connect that completed, neither by timeout nor by the dial', async () => {
    const outer = new AbortController();
    let seen: AbortSignal | undefined;
    const value = await connectWithin(
      async (signal) => {
        seen = signal;
        return 'socket';
      },
      outer.signal,
      50,
    );
    expect(value).toBe('socket');
    await sleep(120);
    outer.abort();
    expect(seen?.aborted).toBe(false);
  });
});

describe('withConnectTimeout', () => {
  const nodes: Libp2p[] = [];
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.stop()));
  });

  it('applies the timeout to the addresses it names and not to the others', async () => {
    const seen: Array<{ ma: string; aborted: boolean }> = [];
    const fake = (): Transport => {
      const t = {
        _connect: (ma: { toString(): string }, options: TCPDialOptions) => {
          if (ma.toString().includes('10.0.0.1')) return neverConnects(options.signal);
          seen.push({ ma: ma.toString(), aborted: options.signal.aborted });
          return Promise.resolve('socket');
        },
      };
      return t as unknown as Transport;
    };
    const transport = withConnectTimeout(fake, (ma) =>
      ma.toString().includes('10.0.0.1') ? 100 : undefined,
    )({} as TCPComponents);
    const connect = Reflect.get(transport, '_connect') as (
      ma: unknown,
      o: { signal: AbortSignal },
    ) => Promise<unknown>;
    const signal = new AbortController().signal;
    await expect(connect(multiaddr('/ip4/10.0.0.1/tcp/1'), { signal })).rejects.toBeInstanceOf(
      ConnectTimeoutError,
    );
    await expect(connect(multiaddr('/ip4/8.8.8.8/tcp/1'), { signal })).resolves.toBe('socket');
    expect(seen).toEqual([{ ma: '/ip4/8.8.8.8/tcp/1', aborted: false }]);
  });

  it('an address whose connect timed out fails at once until its memory expires; other peers are dialled', async () => {
    let connects = 0;
    const fake = (): Transport =>
      ({
        _connect: (_ma: unknown, options: TCPDialOptions) => {
          connects++;
          return neverConnects(options.signal);
        },
      }) as unknown as Transport;
    const memory = new UnreachableAddresses(300);
    const transport = withConnectTimeout(fake, () => 50, memory)({} as TCPComponents);
    const connect = Reflect.get(transport, '_connect') as (
      ma: unknown,
      o: { signal: AbortSignal },
    ) => Promise<unknown>;
    const signal = new AbortController().signal;
    const p1 = multiaddr('/ip4/10.244.1.5/tcp/4001/p2p/12D3KooWPrDMwLDGqsNpbCGopdyqF58YrhU7BCkvEBn4oTvyLnuN');
    const p2 = multiaddr('/ip4/10.244.1.5/tcp/4001/p2p/12D3KooWQeKVoNyeCrsraLRBrzCP4vnQN6nSuPxcNAe9fX4GDAj3');
    await expect(connect(p1, { signal })).rejects.toBeInstanceOf(ConnectTimeoutError);
    expect(connects).toBe(1);
    // Refused from memory: no connect is attempted (a wall-clock bound here was flaky on a busy CI).
    await expect(connect(p1, { signal })).rejects.toThrow(/not dialled again for \d+ ms/);
    expect(connects).toBe(1);
    // The same IP and port of another peer (another cluster reusing the pod range) is its own address.
    await expect(connect(p2, { signal })).rejects.toBeInstanceOf(ConnectTimeoutError);
    expect(connects).toBe(2);
    await sleep(320);
    await expect(connect(p1, { signal })).rejects.toBeInstanceOf(ConnectTimeoutError);
    expect(connects).toBe(3);
  });

  it('the memory stays bounded, dropping the oldest address first', () => {
    const memory = new UnreachableAddresses(60_000, 2);
    memory.remember('a', 0);
    memory.remember('b', 1);
    memory.remember('c', 2);
    expect([memory.remaining('a', 3), memory.remaining('b', 3) > 0, memory.remaining('c', 3) > 0]).toEqual([
      0,
      true,
      true,
    ]);
  });

  it('real nodes: a connection made within a short timeout stays open after it', async () => {
    const make = async () => {
      const n = await createLibp2p({
        addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
        transports: [withConnectTimeout(reusePortTcp(), () => 150)],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
      });
      nodes.push(n);
      return n;
    };
    const [a, b] = [await make(), await make()];
    const conn = await a.dial(b.getMultiaddrs());
    await sleep(400);
    expect(conn.status).toBe('open');
    expect(a.getConnections(b.peerId).map((c) => c.status)).toEqual(['open']);
  });
});
