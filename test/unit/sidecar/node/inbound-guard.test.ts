/**
 * The pre-authentication bounds per source address (sidecar/node/inbound-guard.ts), on libp2p's real
 * multiaddr connections' shape: rate, pending cap, release once authenticated or closed, relayed
 * connections left alone, refusals counted and their logs throttled.
 */
import { describe, expect, it } from '@jest/globals';
import type { MultiaddrConnection } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { pino } from 'pino';
import { InboundGuard, sourceAddress } from '../../../../sidecar/node/inbound-guard.js';

const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';

function connFrom(addr: string): MultiaddrConnection {
  const [, inbound] = multiaddrConnectionPair({ inbound: { remoteAddr: multiaddr(addr) } });
  return inbound;
}

function logged(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { logger, lines };
}

describe('InboundGuard', () => {
  it('reads the source IP of direct connections only', () => {
    expect(sourceAddress(multiaddr('/ip4/10.1.2.3/tcp/4001'))).toBe('10.1.2.3');
    expect(sourceAddress(multiaddr('/ip6/::1/tcp/4001'))).toBe('::1');
    expect(
      sourceAddress(multiaddr(`/ip4/10.1.2.3/tcp/4001/p2p/${PEER}/p2p-circuit/p2p/${PEER}`)),
    ).toBeUndefined();
  });

  it('caps pending connections per address; authentication or close frees a slot', async () => {
    const { logger } = logged();
    const guard = new InboundGuard({ pendingPerAddress: 2, newPerAddressPerSecond: 1_000 }, logger);
    const deny = (c: MultiaddrConnection) => guard.gater.denyInboundConnection?.(c);
    const [a, b, c] = [
      connFrom('/ip4/10.0.0.1/tcp/1'),
      connFrom('/ip4/10.0.0.1/tcp/2'),
      connFrom('/ip4/10.0.0.1/tcp/3'),
    ];
    expect(await deny(a)).toBe(false);
    expect(await deny(b)).toBe(false);
    expect(await deny(c)).toBe(true);
    // Another address is not affected.
    expect(await deny(connFrom('/ip4/10.0.0.2/tcp/1'))).toBe(false);
    // a proves the key: its slot is free, and freeing it twice changes nothing.
    await guard.gater.denyInboundEncryptedConnection?.(peerIdFromString(PEER), a);
    await guard.gater.denyInboundEncryptedConnection?.(peerIdFromString(PEER), a);
    expect(guard.pendingFrom('10.0.0.1')).toBe(1);
    expect(await deny(connFrom('/ip4/10.0.0.1/tcp/4'))).toBe(false);
    // b closes before authenticating.
    b.abort(new Error('gone'));
    expect(guard.pendingFrom('10.0.0.1')).toBe(1);
    expect(guard.refusals()).toEqual({
      rate_per_address: 0,
      pending_per_address: 1,
      nonce_timeout: 0,
      swarm_key: 0,
    });
  });

  it('rate-limits new connections per address, refilling over time', async () => {
    let now = 1_000_000;
    const { logger } = logged();
    const guard = new InboundGuard({ pendingPerAddress: 256, newPerAddressPerSecond: 10 }, logger, () => now);
    const deny = async (addr: string) => {
      const c = connFrom(addr);
      const denied = await guard.gater.denyInboundConnection?.(c);
      c.abort(new Error('done')); // frees the pending slot; only the rate is under test
      return denied;
    };
    const results = [];
    for (let i = 0; i < 15; i++) results.push(await deny('/ip4/10.0.0.1/tcp/1'));
    expect(results.filter((d) => d === true)).toHaveLength(5);
    expect(await deny('/ip4/10.0.0.9/tcp/1')).toBe(false);
    now += 500; // half a second: 5 more
    const later = [];
    for (let i = 0; i < 6; i++) later.push(await deny('/ip4/10.0.0.1/tcp/1'));
    expect(later).toEqual([false, false, false, false, false, true]);
    expect(guard.refusals().rate_per_address).toBe(6);
  });

  it('leaves relayed connections alone', async () => {
    const { logger } = logged();
    const guard = new InboundGuard({ pendingPerAddress: 1, newPerAddressPerSecond: 1 }, logger);
    for (let i = 0; i < 5; i++)
      expect(
        await guard.gater.denyInboundConnection?.(
          connFrom(`/ip4/10.0.0.1/tcp/4001/p2p/${PEER}/p2p-circuit/p2p/${PEER}`),
        ),
      ).toBe(false);
  });

  it('counts every refusal, replays earlier ones to a late listener, and logs at most once per 10 s per reason', async () => {
    let now = 5_000_000;
    const { logger, lines } = logged();
    const guard = new InboundGuard(
      { pendingPerAddress: 1, newPerAddressPerSecond: 1_000 },
      logger,
      () => now,
    );
    for (let i = 0; i < 50; i++) guard.nonceTimedOut(multiaddr('/ip4/10.0.0.7/tcp/5'));
    const seen: Array<[string, number]> = [];
    guard.onRefused((reason, n) => seen.push([reason, n]));
    guard.nonceTimedOut(multiaddr('/ip4/10.0.0.7/tcp/5'));
    expect(seen).toEqual([
      ['nonce_timeout', 50],
      ['nonce_timeout', 1],
    ]);
    expect(lines.map((l) => [l.event, l.reason, l.address])).toEqual([
      ['inbound_refused', 'nonce_timeout', '10.0.0.7'],
    ]);
    now += 10_000;
    guard.nonceTimedOut(multiaddr('/ip4/10.0.0.8/tcp/5'));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ event: 'inbound_refused', reason: 'nonce_timeout', unlogged: 50 });
  });
});
