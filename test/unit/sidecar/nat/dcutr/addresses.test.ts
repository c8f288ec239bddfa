import { describe, expect, it } from '@jest/globals';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { AddressPolicy } from '../../../../../sidecar/nat/address-policy.js';
import {
  type AddressRules,
  acceptOffer,
  isPunchable,
  offerAddresses,
  unilateralTargets,
} from '../../../../../sidecar/nat/dcutr/addresses.js';
import { decodeMessage, encodeMessage, MAX_ADDRS } from '../../../../../sidecar/nat/dcutr/protocol.js';

const PEER = peerIdFromString('12D3KooWK8D783S9ij9FZYk6t8tfbKQUs1Sd6HPfa4wuv2odRAPP');
const OTHER = '12D3KooWKxpGrN7YmCyi5SVpKeVDuBXsWjE7aY9TdGyjoPSB77uW';
const RELAY = '12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';
const SELF = peerIdFromString('12D3KooWDmbRUc1bHFRxQdf7G6tWeqCx2JeQnPVCoNvajtn478fm');

/** The lab's rules: its documentation ranges count as public; this node dials TCP only. */
const policy = new AddressPolicy(['203.0.113.0/24', '198.51.100.0/24']);
const rules: AddressRules = {
  isPublic: (ip) => policy.isPublic(ip),
  canDial: (ma) => !ma.toString().includes('/ws'),
};
const bytes = (...addrs: string[]) => addrs.map((a) => multiaddr(a).bytes);
const text = (addrs: Multiaddr[]) => addrs.map(String);

describe('which of a peer’s addresses a hole punch dials', () => {
  it('keeps public TCP addresses and names the peer at their end', () => {
    expect(
      text(
        acceptOffer(
          bytes('/ip4/198.51.100.10/tcp/4001', `/ip4/203.0.113.5/tcp/4001/p2p/${PEER}`),
          PEER,
          rules,
        ),
      ),
    ).toEqual([`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`, `/ip4/203.0.113.5/tcp/4001/p2p/${PEER}`]);
  });

  it('drops private, relayed, non-TCP, undialable, empty, garbage and other peers’ addresses', () => {
    const offered = [
      ...bytes(
        '/ip4/10.0.0.5/tcp/4001',
        '/ip4/8.8.8.8/tcp/4001',
        `/ip4/203.0.113.10/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`,
        '/ip4/198.51.100.10/udp/4001/quic-v1',
        '/ip4/198.51.100.10/tcp/4001/ws',
        '/dns4/example.com/tcp/4001',
        `/ip4/198.51.100.11/tcp/4001/p2p/${OTHER}`,
      ),
      new Uint8Array(0),
      Uint8Array.of(0xff, 0xff, 0xff),
    ];
    expect(acceptOffer(offered, PEER, rules)).toEqual([]);
  });

  it('lists an address once', () => {
    const offered = bytes('/ip4/198.51.100.10/tcp/4001', `/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`);
    expect(text(acceptOffer(offered, PEER, rules))).toEqual([`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`]);
  });

  it('uses the same rule for a direct upgrade to the peer’s known addresses', () => {
    const known = ['/ip4/10.0.0.5/tcp/4001', '/ip4/198.51.100.10/tcp/4001'].map((a) => multiaddr(a));
    expect(text(unilateralTargets(known, PEER, rules))).toEqual([`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`]);
    expect(isPunchable(multiaddr('/ip6/2001:db8::1/tcp/1'), rules)).toBe(false);
    expect(isPunchable(multiaddr('/ip6/2001:db8::1/tcp/1'), { ...rules, isPublic: () => true })).toBe(true);
  });
});

describe('which of this node’s addresses it offers', () => {
  const own = [
    `/ip4/10.0.0.5/tcp/4001/p2p/${SELF}`,
    `/ip4/203.0.113.10/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${SELF}`,
    `/ip4/198.51.100.7/tcp/4001/p2p/${SELF}`,
  ].map((a) => multiaddr(a));

  it('its own addresses without relay addresses, then the observed candidates it does not hold', () => {
    const candidates = [multiaddr('/ip4/198.51.100.20/tcp/31000'), multiaddr('/ip4/198.51.100.7/tcp/4001')];
    const offered = offerAddresses(own, candidates, SELF).map((b) => multiaddr(b).toString());
    expect(offered).toEqual([
      `/ip4/10.0.0.5/tcp/4001/p2p/${SELF}`,
      `/ip4/198.51.100.7/tcp/4001/p2p/${SELF}`,
      `/ip4/198.51.100.20/tcp/31000/p2p/${SELF}`,
    ]);
  });

  it('stays within the message bounds, keeping the candidates first', () => {
    const many = Array.from({ length: 200 }, (_, i) =>
      multiaddr(`/ip6/fd00::${i.toString(16)}/tcp/4001/p2p/${SELF}`),
    );
    const candidate = multiaddr('/ip4/198.51.100.20/tcp/31000');
    const offered = offerAddresses(many, [candidate], SELF);
    expect(offered.length).toBeLessThanOrEqual(MAX_ADDRS);
    const message = encodeMessage({ type: 'CONNECT', addrs: offered });
    expect(decodeMessage(message).addrs).toHaveLength(offered.length);
    expect(offered.map((b) => multiaddr(b).toString())).toContain(`/ip4/198.51.100.20/tcp/31000/p2p/${SELF}`);
  });
});
