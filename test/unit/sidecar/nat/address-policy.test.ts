import { describe, expect, it } from '@jest/globals';
import { AddressPolicy } from '../../../../sidecar/nat/address-policy.js';

describe('AddressPolicy', () => {
  it('counts only internet addresses as public by default', () => {
    const p = new AddressPolicy();
    expect(p.isPublic('8.8.8.8')).toBe(true);
    expect(p.isPublic('2606:4700::1111')).toBe(true);
    for (const ip of [
      '10.1.2.3',
      '172.20.0.1',
      '192.168.1.1',
      '127.0.0.1',
      '100.64.1.1',
      '169.254.0.1',
      '203.0.113.5',
      '::1',
      'fd00::1',
    ]) {
      expect([ip, p.isPublic(ip)]).toEqual([ip, false]);
    }
  });

  it('takes an explicit list of public ranges instead', () => {
    const p = new AddressPolicy(['203.0.113.0/24', '198.51.100.0/24']);
    expect(p.isPublic('203.0.113.7')).toBe(true);
    expect(p.isPublic('198.51.100.200')).toBe(true);
    expect(p.isPublic('198.18.1.2')).toBe(false);
    expect(p.isPublic('8.8.8.8')).toBe(false);
  });

  it('reads the IP of a multiaddr', () => {
    const p = new AddressPolicy(['203.0.113.0/24']);
    expect(p.isPublicMultiaddr('/ip4/203.0.113.9/tcp/4001')).toBe(true);
    expect(p.isPublicMultiaddr('/dns4/example.com/tcp/4001')).toBe(false);
    expect(AddressPolicy.ipOf('/ip6/::1/tcp/1')).toBe('::1');
  });
});
