/**
 * Checks of the addresses a config names (multiaddrs, peer IDs, IP hosts), each returning the one
 * line that says what is wrong, or undefined. Hand-parsed rather than by @multiformats/multiaddr,
 * whose errors are multi-line and name no part; the CRD (crds/schema.ts) mirrors these rules.
 */
import { BlockList, isIP } from 'node:net';
import { peerIdFromString } from '@libp2p/peer-id';

/** Longest multiaddr accepted anywhere in a config (a DNS name is at most 253). */
export const MAX_MULTIADDR_LENGTH = 512;

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/** A base58btc (12D3KooW..., Qm...) or CIDv1 peer ID that decodes to a key or its hash. */
export function peerIdProblem(id: string): string | undefined {
  if (id.length === 0 || id.length > 128 || !/^[1-9A-HJ-NP-Za-km-z]+$/.test(id))
    return `expected a peer ID such as 12D3KooW... (base58), got "${id.slice(0, 60)}"`;
  try {
    peerIdFromString(id);
    return undefined;
  } catch {
    return `"${id.slice(0, 60)}" is not a valid peer ID (it does not decode to a key)`;
  }
}

export interface MultiaddrRules {
  /** `required`: must end in /p2p/<peer id>; `forbidden`: must not carry one. */
  peer: 'required' | 'forbidden';
  /** Port 0 (an ephemeral one) is allowed: listen addresses only. */
  portZero?: boolean;
}

/**
 * A TCP multiaddr: /ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<id>[/p2p-circuit/p2p/<id>]], or
 * /dnsaddr/<name>/p2p/<id> for a bootstrap peer (its TXT records name the transports). A private
 * network runs over TCP only.
 */
export function multiaddrProblem(addr: string, rules: MultiaddrRules): string | undefined {
  if (addr.length > MAX_MULTIADDR_LENGTH) return `expected at most ${MAX_MULTIADDR_LENGTH} characters`;
  if (!addr.startsWith('/')) return 'expected a multiaddr such as /ip4/192.0.2.1/tcp/4001';
  const parts = addr.slice(1).split('/');
  const [proto, host] = parts;
  if (host === undefined || host === '')
    return `expected an address after /${proto ?? ''}, as in /ip4/192.0.2.1/tcp/4001`;
  let rest: string[];
  switch (proto) {
    case 'ip4':
      if (isIP(host) !== 4) return `"${host.slice(0, 60)}" is not an IPv4 address`;
      break;
    case 'ip6':
      if (isIP(host) !== 6) return `"${host.slice(0, 60)}" is not an IPv6 address`;
      break;
    case 'dns':
    case 'dns4':
    case 'dns6':
    case 'dnsaddr':
      if (!HOSTNAME.test(host)) return `"${host.slice(0, 60)}" is not a DNS name`;
      break;
    default:
      return `expected /ip4, /ip6, /dns, /dns4, /dns6 or /dnsaddr first, got /${(proto ?? '').slice(0, 20)}`;
  }
  rest = parts.slice(2);
  if (proto === 'dnsaddr') {
    if (rules.peer === 'forbidden') return '/dnsaddr names peers: use /dns4/<name>/tcp/<port> here';
  } else {
    if (rest[0] !== 'tcp')
      return rest.length === 0
        ? 'expected a transport: /tcp/<port> after the address'
        : `expected /tcp/<port> after the address (a private network runs over TCP only), got /${(rest[0] ?? '').slice(0, 20)}`;
    const port = rest[1] ?? '';
    const n = Number(port);
    if (!/^\d{1,5}$/.test(port) || n > 65535 || (n === 0 && rules.portZero !== true))
      return `expected a TCP port from ${rules.portZero === true ? 0 : 1} to 65535, got "${port.slice(0, 20)}"`;
    rest = rest.slice(2);
  }
  if (rest.length === 0) {
    return rules.peer === 'required' ? 'expected the peer ID at the end: .../p2p/<peer id>' : undefined;
  }
  // A peer reached through a relay: <relay address>/p2p/<relay>/p2p-circuit/p2p/<peer>. Only the
  // node config takes one (a bootstrap peer behind a NAT); the operator never renders it.
  const circuit = rest.length === 5 && rest[2] === 'p2p-circuit' && rest[3] === 'p2p';
  if (rest[0] !== 'p2p' || (rest.length !== 2 && !circuit))
    return `unexpected /${rest.join('/').slice(0, 80)} after the ${proto === 'dnsaddr' ? 'name' : 'port'}`;
  if (rules.peer === 'forbidden') return 'expected no /p2p/<peer id> here: the node announces its own';
  return peerIdProblem(rest[1] ?? '') ?? (circuit ? peerIdProblem(rest[4] ?? '') : undefined);
}

// Never a target: link-local (the cloud metadata service at 169.254.169.254), unspecified,
// multicast and broadcast. BlockList also matches IPv4-mapped IPv6 forms of the IPv4 ranges.
const neverTargets = new BlockList();
neverTargets.addSubnet('169.254.0.0', 16, 'ipv4');
neverTargets.addSubnet('0.0.0.0', 8, 'ipv4');
neverTargets.addSubnet('224.0.0.0', 4, 'ipv4');
neverTargets.addAddress('255.255.255.255', 'ipv4');
neverTargets.addSubnet('fe80::', 10, 'ipv6');
neverTargets.addAddress('::', 'ipv6');
neverTargets.addSubnet('ff00::', 8, 'ipv6');

const loopback = new BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/** An expose target must be a unicast address: loopback or a routable one, never link-local. */
export function exposeHostProblem(host: string): string | undefined {
  const family = isIP(host);
  if (family === 0) return 'expected an IPv4 or IPv6 address';
  if (neverTargets.check(host, family === 4 ? 'ipv4' : 'ipv6'))
    return 'link-local, unspecified, multicast and broadcast addresses are never a target';
  return undefined;
}

/** True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback). */
export function isLoopbackHost(host: string): boolean {
  const family = isIP(host);
  return family !== 0 && loopback.check(host, family === 4 ? 'ipv4' : 'ipv6');
}
