/**
 * Which IP addresses count as reachable between sites. By default the public internet (anything
 * outside the private, loopback, link-local, CGNAT, documentation and multicast ranges); a network
 * whose sites meet on other ranges (a lab, an all-private WAN) lists them in `publicRanges`.
 */
import { BlockList, isIP } from 'node:net';

const NON_PUBLIC_V4 = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 3],
] as const;
const NON_PUBLIC_V6 = [
  ['::', 127],
  ['fc00::', 7],
  ['fe80::', 10],
  ['2001:db8::', 32],
  ['ff00::', 8],
] as const;

/** Never dialled, whatever a peer announces: unspecified, link-local (cloud metadata), multicast, broadcast. */
const NEVER_DIAL_V4 = [
  ['0.0.0.0', 8],
  ['169.254.0.0', 16],
  ['224.0.0.0', 4],
  ['255.255.255.255', 32],
] as const;
const NEVER_DIAL_V6 = [
  ['::', 128],
  ['fe80::', 10],
  ['ff00::', 8],
] as const;

export class AddressPolicy {
  private readonly neverDial = new BlockList();
  private readonly loopback = new BlockList();
  private readonly explicit?: BlockList;
  private readonly nonPublic = new BlockList();

  /** `publicRanges`: CIDRs that count as public; empty means the usual internet ranges. */
  constructor(publicRanges: readonly string[] = []) {
    for (const [net, bits] of NON_PUBLIC_V4) this.nonPublic.addSubnet(net, bits, 'ipv4');
    for (const [net, bits] of NON_PUBLIC_V6) this.nonPublic.addSubnet(net, bits, 'ipv6');
    for (const [net, bits] of NEVER_DIAL_V4) this.neverDial.addSubnet(net, bits, 'ipv4');
    for (const [net, bits] of NEVER_DIAL_V6) this.neverDial.addSubnet(net, bits, 'ipv6');
    this.loopback.addSubnet('127.0.0.0', 8, 'ipv4');
    this.loopback.addSubnet('::1', 128, 'ipv6');
    if (publicRanges.length > 0) {
      const list = new BlockList();
      for (const range of publicRanges) {
        const [net = '', bits = '0'] = range.split('/');
        list.addSubnet(net, Number(bits), isIP(net) === 6 ? 'ipv6' : 'ipv4');
      }
      this.explicit = list;
    }
  }

  isPublic(ip: string): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (this.explicit !== undefined) return this.explicit.check(ip, type);
    return !this.nonPublic.check(ip, type);
  }

  /**
   * Whether this node may dial `ip` when a peer (a DHT record) names it. A remote peer's loopback
   * address is this pod itself (its app's ports): only where the node listens on loopback (one
   * host, tests and the demo) is it a peer.
   */
  isDialable(ip: string, allowLoopback: boolean): boolean {
    const family = isIP(ip);
    if (family === 0) return false;
    const type = family === 6 ? 'ipv6' : 'ipv4';
    if (this.neverDial.check(ip, type)) return false;
    return allowLoopback || !this.loopback.check(ip, type);
  }

  /** The IP of a multiaddr string such as /ip4/1.2.3.4/tcp/4001, or undefined. */
  static ipOf(multiaddr: string): string | undefined {
    const m = /^\/ip[46]\/([^/]+)/.exec(multiaddr);
    return m?.[1];
  }

  isPublicMultiaddr(multiaddr: string): boolean {
    const ip = AddressPolicy.ipOf(multiaddr);
    return ip !== undefined && this.isPublic(ip);
  }
}
