import { describe, expect, it } from '@jest/globals';
import type { Connection } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import { AddressPolicy } from '../../../../sidecar/nat/address-policy.js';
import { ObservedAddrs } from '../../../../sidecar/nat/observed-addrs.js';
import { bestConnection } from '../../../../sidecar/node/connection-paths.js';

const RELAY0 = '12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';
const RELAY1 = '12D3KooWDmbRUc1bHFRxQdf7G6tWeqCx2JeQnPVCoNvajtn478fm';
const PEER = '12D3KooWK8D783S9ij9FZYk6t8tfbKQUs1Sd6HPfa4wuv2odRAPP';
const OTHER = '12D3KooWKxpGrN7YmCyi5SVpKeVDuBXsWjE7aY9TdGyjoPSB77uW';
const policy = new AddressPolicy(['203.0.113.0/24', '198.51.100.0/24']);

function seen(observer: string, observed: string, remote = '/ip4/203.0.113.10/tcp/4001') {
  return {
    peerId: peerIdFromString(observer),
    observedAddr: multiaddr(observed),
    connection: { remoteAddr: multiaddr(remote), limits: undefined },
  };
}

describe('observed addresses', () => {
  it('takes one observation from a configured relay, two agreeing ones otherwise', () => {
    const trusted = new ObservedAddrs(policy, new Set([RELAY0]));
    expect(trusted.observe(seen(RELAY0, '/ip4/198.51.100.10/tcp/4001'))).toBe(true);
    expect(trusted.candidates().map(String)).toEqual(['/ip4/198.51.100.10/tcp/4001']);

    const untrusted = new ObservedAddrs(policy, new Set());
    untrusted.observe(seen(PEER, '/ip4/198.51.100.10/tcp/4001'));
    expect(untrusted.candidates()).toEqual([]);
    untrusted.observe(seen(OTHER, '/ip4/198.51.100.10/tcp/4001', '/ip4/198.51.100.20/tcp/4001'));
    expect(untrusted.candidates().map(String)).toEqual(['/ip4/198.51.100.10/tcp/4001']);
  });

  it('has no candidates behind a symmetric NAT (trusted observers disagree on the port)', () => {
    const o = new ObservedAddrs(policy, new Set([RELAY0, RELAY1]));
    o.observe(seen(RELAY0, '/ip4/198.51.100.12/tcp/31000'));
    o.observe(seen(RELAY1, '/ip4/198.51.100.12/tcp/52001', '/ip4/203.0.113.11/tcp/4001'));
    expect(o.symmetric()).toBe(true);
    expect(o.candidates()).toEqual([]);
  });

  it('ignores relayed connections, non-public observers and non-public or non-TCP addresses', () => {
    const o = new ObservedAddrs(policy, new Set([RELAY0]));
    const relayed = seen(
      RELAY0,
      '/ip4/198.51.100.10/tcp/4001',
      `/ip4/203.0.113.10/tcp/4001/p2p/${RELAY1}/p2p-circuit`,
    );
    expect(o.observe(relayed)).toBe(false);
    expect(o.observe(seen(RELAY0, '/ip4/198.51.100.10/tcp/4001', '/ip4/10.0.0.5/tcp/4001'))).toBe(false);
    expect(o.observe(seen(RELAY0, '/ip4/10.1.2.3/tcp/4001'))).toBe(false);
    expect(o.observe(seen(RELAY0, '/ip4/198.51.100.10/udp/4001'))).toBe(false);
    expect(o.observed).toBe(false);
  });

  it('forgets observations after their TTL', () => {
    let now = 0;
    const o = new ObservedAddrs(policy, new Set([RELAY0]), { ttlMs: 1_000, now: () => now });
    o.observe(seen(RELAY0, '/ip4/198.51.100.10/tcp/4001'));
    now = 1_001;
    expect(o.candidates()).toEqual([]);
  });
});

describe('bestConnection', () => {
  const conn = (addr: string, limited = false, status = 'open') =>
    ({
      remoteAddr: multiaddr(addr),
      limits: limited ? { bytes: 1n } : undefined,
      status,
    }) as unknown as Connection;
  const direct = conn(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`);
  const relayed = conn(`/ip4/203.0.113.10/tcp/4001/p2p/${RELAY0}/p2p-circuit/p2p/${PEER}`);
  const limited = conn(`/ip4/203.0.113.11/tcp/4001/p2p/${RELAY1}/p2p-circuit/p2p/${PEER}`, true);

  it('prefers a direct connection even when the relayed one has no limits (our relays)', () => {
    expect(bestConnection([relayed, direct])).toBe(direct);
    expect(bestConnection([limited, relayed])).toBe(relayed);
    expect(bestConnection([limited])).toBe(limited);
    expect(bestConnection([conn(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`, false, 'closing'), relayed])).toBe(
      relayed,
    );
    expect(bestConnection([])).toBeUndefined();
  });
});
