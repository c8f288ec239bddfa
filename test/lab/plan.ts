/**
 * Pure part of the lab: options in, every namespace name, interface and address out. No I/O, so
 * the plan can be checked without root (see plan.test.ts).
 */
import { intToIp, ipToInt } from './addresses.js';
import { LabConfigError } from './errors.js';

/**
 * How a site's router treats traffic:
 * - `eim`: endpoint-independent mapping NAT (iptables MASQUERADE keeps the source port when it can).
 * - `symmetric`: MASQUERADE `--random-fully`, a fresh random external port per connection.
 * - `upnp`: like `eim`, plus miniupnpd offering UPnP-IGD and/or NAT-PMP on the LAN.
 * - `none`: plain routing; the site's LAN is reachable from the internet.
 */
export type NatKind = 'eim' | 'symmetric' | 'upnp' | 'none';

export interface PortMappingInit {
  /** Offer UPnP-IGD (SSDP discovery + SOAP). Default true. */
  upnp?: boolean;
  /** Offer NAT-PMP (and PCP) on UDP 5351. Default true. */
  natpmp?: boolean;
}

export interface SiteInit {
  /** Site name: lowercase letter then up to 7 lowercase letters or digits. */
  name: string;
  nat: NatKind;
  /** Pod hosts behind the router. Default 1. */
  hosts?: number;
  /** Only for `nat: 'upnp'`: which protocols miniupnpd offers. */
  portMapping?: PortMappingInit;
}

export interface LabInit {
  /** Reachable relay/bootstrap hosts on the internet (203.0.113.10, .11, ...). Default 1. */
  relays?: number;
  /** Sites, each a router and its pod hosts. Default none. */
  sites?: readonly SiteInit[];
}

/** Recognisable prefix of every lab namespace: `ptlab-<owner pid>-<4 hex>-<role>`. */
export const LAB_PREFIX = 'ptlab-';
/** Matches a lab namespace name; group 1 is the owner pid, group 2 the run id. */
export const LAB_NAMESPACE_PATTERN = /^ptlab-((\d+)-[0-9a-f]{4})-[a-z0-9-]+$/;

export const MAX_RELAYS = 50;
export const MAX_SITES = 50;
/** `none` sites get a /27 of 192.0.2.0/24 each. */
export const MAX_REACHABLE_SITES = 8;
export const MAX_HOSTS_PER_NATED_SITE = 50;
export const MAX_HOSTS_PER_REACHABLE_SITE = 28;

const SITE_NAME = /^[a-z][a-z0-9]{0,7}$/;

export interface HostPlan {
  /** `relay0`, or `<site>/<index>`. */
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  readonly prefixLength: number;
  readonly gateway: string;
  /** The host's only interface besides lo. */
  readonly iface: 'eth0';
  /** The veth end on the other side: in the backbone for relays, in the router for pod hosts. */
  readonly peerIface: string;
}

export interface SitePlan {
  readonly name: string;
  readonly nat: NatKind;
  readonly ns: string;
  readonly publicIp: string;
  readonly lanIp: string;
  readonly lanCidr: string;
  readonly lanPrefixLength: number;
  /** Interface names inside the router namespace. */
  readonly wanIface: 'wan';
  readonly lanIface: 'lan';
  /** The router's veth end in the backbone. */
  readonly backboneIface: string;
  readonly hosts: readonly HostPlan[];
  readonly portMapping: Required<PortMappingInit> | undefined;
}

export interface BackbonePlan {
  readonly ns: string;
  /** Bridge and address of the relay segment (203.0.113.1). */
  readonly relayBridge: 'brr';
  readonly relayGateway: string;
  /** Bridge and address of the site WAN segment (198.51.100.1). */
  readonly siteBridge: 'brs';
  readonly siteGateway: string;
  /** Where the lab's STUN responder listens (miniupnpd needs it; see tools/stun-server.ts). */
  readonly stunIp: string;
  readonly stunPort: number;
}

export interface LabPlan {
  readonly runId: string;
  readonly backbone: BackbonePlan;
  readonly relays: readonly HostPlan[];
  readonly sites: readonly SitePlan[];
  /** Every namespace, in creation order. */
  readonly namespaces: readonly string[];
}

/** A fresh run id: the owner's pid (so a later run can tell a crashed run from a live one) + 4 hex. */
export function newRunId(pid: number = process.pid, random: () => number = Math.random): string {
  const suffix = Math.floor(random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  return `${pid}-${suffix}`;
}

function count(value: number | undefined, fallback: number, min: number, max: number, what: string): number {
  const n = value ?? fallback;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new LabConfigError(`${what} must be an integer from ${min} to ${max}, got ${String(value)}`);
  }
  return n;
}

export function planLab(init: LabInit, runId: string): LabPlan {
  if (!/^\d+-[0-9a-f]{4}$/.test(runId)) {
    throw new LabConfigError(`runId must look like <pid>-<4 hex>, got ${runId}`);
  }
  const prefix = `${LAB_PREFIX}${runId}-`;
  const relayCount = count(init.relays, 1, 0, MAX_RELAYS, 'relays');
  const siteInits = init.sites ?? [];
  if (siteInits.length > MAX_SITES) {
    throw new LabConfigError(`at most ${MAX_SITES} sites, got ${siteInits.length}`);
  }

  const backbone: BackbonePlan = {
    ns: `${prefix}inet`,
    relayBridge: 'brr',
    relayGateway: '203.0.113.1',
    siteBridge: 'brs',
    siteGateway: '198.51.100.1',
    stunIp: '203.0.113.1',
    stunPort: 3478,
  };

  const relays: HostPlan[] = [];
  for (let j = 0; j < relayCount; j++) {
    relays.push({
      name: `relay${j}`,
      ns: `${prefix}relay${j}`,
      ip: `203.0.113.${10 + j}`,
      prefixLength: 24,
      gateway: backbone.relayGateway,
      iface: 'eth0',
      peerIface: `r${j}`,
    });
  }

  const seen = new Set<string>();
  const sites: SitePlan[] = [];
  let reachableIndex = 0;
  siteInits.forEach((site, i) => {
    if (!SITE_NAME.test(site.name)) {
      throw new LabConfigError(`site name must match ${SITE_NAME}, got ${JSON.stringify(site.name)}`);
    }
    if (seen.has(site.name)) {
      throw new LabConfigError(`duplicate site name ${site.name}`);
    }
    seen.add(site.name);
    if (!['eim', 'symmetric', 'upnp', 'none'].includes(site.nat)) {
      throw new LabConfigError(
        `site ${site.name}: nat must be eim, symmetric, upnp or none, got ${String(site.nat)}`,
      );
    }
    if (site.portMapping !== undefined && site.nat !== 'upnp') {
      throw new LabConfigError(`site ${site.name}: portMapping needs nat: 'upnp', got ${site.nat}`);
    }
    const reachable = site.nat === 'none';
    const hostCount = count(
      site.hosts,
      1,
      0,
      reachable ? MAX_HOSTS_PER_REACHABLE_SITE : MAX_HOSTS_PER_NATED_SITE,
      `site ${site.name}: hosts`,
    );

    let lanBase: number;
    let lanPrefixLength: number;
    if (reachable) {
      if (reachableIndex >= MAX_REACHABLE_SITES) {
        throw new LabConfigError(`at most ${MAX_REACHABLE_SITES} sites with nat: 'none'`);
      }
      lanBase = ipToInt('192.0.2.0') + 32 * reachableIndex;
      lanPrefixLength = 27;
      reachableIndex++;
    } else {
      lanBase = ipToInt('198.18.0.0') + 256 * (i + 1);
      lanPrefixLength = 24;
    }
    const lanIp = intToIp(lanBase + 1);
    const ns = `${prefix}${site.name}-r`;
    const hosts: HostPlan[] = [];
    for (let k = 0; k < hostCount; k++) {
      hosts.push({
        name: `${site.name}/${k}`,
        ns: `${prefix}${site.name}-h${k}`,
        ip: intToIp(lanBase + (reachable ? 2 : 10) + k),
        prefixLength: lanPrefixLength,
        gateway: lanIp,
        iface: 'eth0',
        peerIface: `h${k}`,
      });
    }
    const portMapping =
      site.nat === 'upnp'
        ? { upnp: site.portMapping?.upnp ?? true, natpmp: site.portMapping?.natpmp ?? true }
        : undefined;
    if (portMapping && !portMapping.upnp && !portMapping.natpmp) {
      throw new LabConfigError(`site ${site.name}: portMapping turns off both upnp and natpmp`);
    }
    sites.push({
      name: site.name,
      nat: site.nat,
      ns,
      publicIp: `198.51.100.${10 + i}`,
      lanIp,
      lanCidr: `${intToIp(lanBase)}/${lanPrefixLength}`,
      lanPrefixLength,
      wanIface: 'wan',
      lanIface: 'lan',
      backboneIface: `s${i}`,
      hosts,
      portMapping,
    });
  });

  const namespaces = [
    backbone.ns,
    ...relays.map((r) => r.ns),
    ...sites.flatMap((s) => [s.ns, ...s.hosts.map((h) => h.ns)]),
  ];
  return { runId, backbone, relays, sites, namespaces };
}
