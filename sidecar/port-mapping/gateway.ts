/**
 * Where the NAT gateway is and which of our addresses faces it: the default route's gateway (from
 * /proc/net/route, for NAT-PMP, which has no discovery of its own) and the local IPv4 address on the
 * gateway's subnet (the internal host of a port mapping). Parsing is pure; reading is at the edge.
 */
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { type NetworkInterfaceInfo, networkInterfaces } from 'node:os';

/** RTF_UP | RTF_GATEWAY (linux/route.h): a usable route through a gateway. */
const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

export interface DefaultRoute {
  readonly iface: string;
  readonly gateway: string;
  readonly metric: number;
}

/**
 * `/proc/net/route` stores addresses as the hex of a host-order (little-endian on every platform
 * Node runs Linux on) 32-bit value: `0102A8C0` is 192.168.2.1. Undefined when not 8 hex digits.
 */
export function procRouteHexToIPv4(hex: string): string | undefined {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return undefined;
  const n = Number.parseInt(hex, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
}

/**
 * The IPv4 default routes of a `/proc/net/route` text (header line first), lowest metric first.
 * Only routes that are up, go through a gateway and cover 0.0.0.0/0 count.
 */
export function parseDefaultRoutes(text: string): DefaultRoute[] {
  const routes: DefaultRoute[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const [iface = '', destination = '', gatewayHex = '', flagsHex = '', , , metricText = '', mask = ''] = f;
    const flags = Number.parseInt(flagsHex, 16);
    if (destination !== '00000000' || mask !== '00000000') continue;
    if ((flags & (RTF_UP | RTF_GATEWAY)) !== (RTF_UP | RTF_GATEWAY)) continue;
    const gateway = procRouteHexToIPv4(gatewayHex);
    if (gateway === undefined || gateway === '0.0.0.0') continue;
    routes.push({ iface, gateway, metric: Number(metricText) || 0 });
  }
  return routes.sort((a, b) => a.metric - b.metric);
}

/** The gateway of the preferred IPv4 default route, or undefined when there is none. */
export async function readDefaultGateway(path = '/proc/net/route'): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    // Not Linux, or /proc is not mounted: the user can still set nat.gateway.
    return undefined;
  }
  return parseDefaultRoutes(text)[0]?.gateway;
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((n, octet) => ((n << 8) | Number(octet)) >>> 0, 0);
}

/**
 * The local IPv4 address on the same subnet as `gateway`, from `os.networkInterfaces()`-shaped
 * input. The gateway maps ports to the address it sees us on, which is this one.
 */
export function addressFacing(
  gateway: string,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>,
): string | undefined {
  if (!isIPv4(gateway)) return undefined;
  const g = ipv4ToInt(gateway);
  for (const infos of Object.values(interfaces)) {
    for (const info of infos ?? []) {
      if (info.family !== 'IPv4' || info.internal) continue;
      const mask = ipv4ToInt(info.netmask);
      if ((ipv4ToInt(info.address) & mask) >>> 0 === (g & mask) >>> 0) return info.address;
    }
  }
  return undefined;
}

/**
 * The local address the kernel would use to reach `gateway`: the subnet match first, else a
 * connected UDP socket's source address (a route lookup; no packet is sent).
 */
export async function localAddressFor(gateway: string): Promise<string | undefined> {
  const onSubnet = addressFacing(gateway, networkInterfaces());
  if (onSubnet !== undefined) return onSubnet;
  const socket = createSocket('udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(9, gateway, () => resolve());
    });
    return socket.address().address;
  } catch {
    return undefined;
  } finally {
    socket.close();
  }
}
