/**
 * The lab's address plan. Every address comes from a documentation or benchmarking range, never
 * from 10/8, 172.16/12 or 192.168/16: traffic to those is flagged in this workplace, and using
 * ranges that cannot exist on a real network makes a leak out of the lab obvious.
 *
 *   203.0.113.0/24  (RFC 5737 TEST-NET-3)  "internet" segment of relays/bootstrap hosts
 *   198.51.100.0/24 (RFC 5737 TEST-NET-2)  "internet" segment of the site routers' WAN sides
 *   192.0.2.0/24    (RFC 5737 TEST-NET-1)  LANs of sites without NAT (routed, reachable), /27 each
 *   198.18.0.0/15   (RFC 2544)             LANs behind NAT routers, 198.18.<site+1>.0/24
 */

/** Relays and other internet hosts. The backbone router is .1. */
export const RELAY_SEGMENT = '203.0.113.0/24';
/** The WAN side of every site router. The backbone router is .1. */
export const SITE_WAN_SEGMENT = '198.51.100.0/24';
/** LANs of `none` sites: routed from the internet, so reachable. */
export const REACHABLE_LAN_RANGE = '192.0.2.0/24';
/** LANs behind NAT routers: never routed on the lab internet. */
export const NATED_LAN_RANGE = '198.18.0.0/15';

/**
 * The ranges that count as reachable between sites (the node config's `publicRanges`): what a
 * node may announce and dial as a public address in the lab. The NATed LANs are not in it.
 */
export const publicRanges: readonly string[] = Object.freeze([
  RELAY_SEGMENT,
  SITE_WAN_SEGMENT,
  REACHABLE_LAN_RANGE,
]);

/** Ranges that must never appear in the lab (RFC 1918). */
export const FORBIDDEN_RANGES: readonly string[] = Object.freeze([
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
]);

/** Every range the lab may use. */
export const LAB_RANGES: readonly string[] = Object.freeze([...publicRanges, NATED_LAN_RANGE]);

export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) {
    throw new TypeError(`not an IPv4 address: ${ip}`);
  }
  let value = 0;
  for (const part of parts) {
    const octet = Number(part);
    if (!/^\d{1,3}$/.test(part) || octet > 255) {
      throw new TypeError(`not an IPv4 address: ${ip}`);
    }
    value = value * 256 + octet;
  }
  return value;
}

export function intToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** Whether `ip` lies inside `cidr` (IPv4 only). */
export function cidrContains(cidr: string, ip: string): boolean {
  const [base = '', bitsText = ''] = cidr.split('/');
  const bits = Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > 32) {
    throw new TypeError(`not an IPv4 CIDR: ${cidr}`);
  }
  const size = 2 ** (32 - bits);
  const start = Math.floor(ipToInt(base) / size) * size;
  const value = ipToInt(ip);
  return value >= start && value < start + size;
}

/** Whether `ip` is reachable between lab sites, i.e. inside one of `publicRanges`. */
export function isLabPublic(ip: string): boolean {
  return publicRanges.some((range) => cidrContains(range, ip));
}
