/** The lab's pure parts (plan and renderers): no root needed, runs everywhere. */
import { describe, expect, test } from '@jest/globals';
import {
  cidrContains,
  FORBIDDEN_RANGES,
  isLabPublic,
  LAB_RANGES,
  NATED_LAN_RANGE,
  publicRanges,
} from './addresses.js';
import { LAB_NAMESPACE_PATTERN, type LabInit, newRunId, planLab } from './plan.js';
import { backboneBatch, hostBatch, miniupnpdConfig, routerBatch, routerIptables } from './render.js';

const init: LabInit = {
  relays: 2,
  sites: [
    { name: 'a', nat: 'eim', hosts: 3 },
    { name: 'b', nat: 'symmetric' },
    { name: 'u', nat: 'upnp', portMapping: { upnp: false } },
    { name: 'n', nat: 'none', hosts: 2 },
    { name: 'm', nat: 'none' },
  ],
};

function allIps(plan: ReturnType<typeof planLab>): string[] {
  return [
    plan.backbone.relayGateway,
    plan.backbone.siteGateway,
    ...plan.relays.map((r) => r.ip),
    ...plan.sites.flatMap((s) => [s.publicIp, s.lanIp, ...s.hosts.map((h) => h.ip)]),
  ];
}

describe('lab plan', () => {
  const plan = planLab(init, '1234-beef');

  test('every namespace carries the run prefix and is recognised as a lab namespace', () => {
    expect(plan.namespaces).toHaveLength(1 + 2 + (1 + 3) + 2 + 2 + (1 + 2) + 2);
    for (const ns of plan.namespaces) {
      expect(ns.startsWith('ptlab-1234-beef-')).toBe(true);
      expect(LAB_NAMESPACE_PATTERN.exec(ns)?.[1]).toBe('1234-beef');
    }
    expect(new Set(plan.namespaces).size).toBe(plan.namespaces.length);
  });

  test('addresses are unique, from documentation/benchmark ranges only, never RFC 1918', () => {
    const ips = allIps(plan);
    expect(new Set(ips).size).toBe(ips.length);
    for (const ip of ips) {
      expect(LAB_RANGES.some((r) => cidrContains(r, ip))).toBe(true);
      expect(FORBIDDEN_RANGES.some((r) => cidrContains(r, ip))).toBe(false);
    }
  });

  test('NATed LANs are private to the lab; relays, router WANs and none-site LANs are public', () => {
    for (const site of plan.sites) {
      expect(isLabPublic(site.publicIp)).toBe(true);
      for (const host of site.hosts) {
        expect(isLabPublic(host.ip)).toBe(site.nat === 'none');
        expect(cidrContains(NATED_LAN_RANGE, host.ip)).toBe(site.nat !== 'none');
        expect(cidrContains(site.lanCidr, host.ip)).toBe(true);
      }
    }
    expect(plan.relays.every((r) => isLabPublic(r.ip))).toBe(true);
    expect(publicRanges).toEqual(['203.0.113.0/24', '198.51.100.0/24', '192.0.2.0/24']);
  });

  test('invalid options are LabConfigError', () => {
    const bad: LabInit[] = [
      { sites: [{ name: 'A', nat: 'eim' }] },
      { sites: [{ name: 'toolongname', nat: 'eim' }] },
      {
        sites: [
          { name: 'a', nat: 'eim' },
          { name: 'a', nat: 'none' },
        ],
      },
      { sites: [{ name: 'a', nat: 'eim', hosts: -1 }] },
      { sites: [{ name: 'a', nat: 'eim', portMapping: { upnp: true } }] },
      { sites: [{ name: 'a', nat: 'upnp', portMapping: { upnp: false, natpmp: false } }] },
      { relays: 1.5 },
      { sites: Array.from({ length: 9 }, (_, i) => ({ name: `n${i}`, nat: 'none' as const })) },
    ];
    for (const options of bad) {
      expect(() => planLab(options, '1-0000')).toThrow(expect.objectContaining({ name: 'LabConfigError' }));
    }
    expect(() => planLab({}, 'nope')).toThrow(expect.objectContaining({ name: 'LabConfigError' }));
  });

  test('run ids are <pid>-<4 hex>', () => {
    expect(newRunId(42, () => 0)).toBe('42-0000');
    expect(newRunId(42, () => 0.99999)).toBe('42-ffff');
  });
});

describe('lab renderers', () => {
  const plan = planLab(init, '1234-beef');
  const site = (name: string) => {
    const found = plan.sites.find((s) => s.name === name);
    if (!found) {
      throw new Error(`no site ${name}`);
    }
    return found;
  };

  test('veths are created with their peer inside a lab namespace, never in the host namespace', () => {
    const lines = [
      ...backboneBatch(plan),
      ...plan.sites.flatMap((s) => routerBatch(s, plan.backbone.siteGateway)),
    ];
    const veths = lines.filter((l) => l.includes('type veth'));
    expect(veths).toHaveLength(2 + 5 + 3 + 1 + 1 + 2 + 1);
    for (const line of veths) {
      expect(line).toMatch(/ netns ptlab-1234-beef-[a-z0-9-]+$/);
    }
  });

  test('only none sites are routed from the backbone', () => {
    const routes = backboneBatch(plan).filter((l) => l.startsWith('route add'));
    expect(routes).toEqual([
      `route add ${site('n').lanCidr} via ${site('n').publicIp}`,
      `route add ${site('m').lanCidr} via ${site('m').publicIp}`,
    ]);
  });

  test('eim masquerades, symmetric masquerades with --random-fully, none does not NAT', () => {
    expect(routerIptables(site('a'))).toMatch(/-j MASQUERADE\n/);
    expect(routerIptables(site('b'))).toMatch(/-j MASQUERADE --random-fully\n/);
    expect(routerIptables(site('n'))).not.toMatch(/MASQUERADE|DROP/);
    // Unsolicited inbound is dropped; replies and port-mapped (DNAT) traffic pass.
    expect(routerIptables(site('a'))).toContain('--ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT');
  });

  test('hosts route SSDP on their LAN; miniupnpd config follows portMapping', () => {
    const host = site('u').hosts[0];
    expect(host && hostBatch(host)).toContain('route add 239.255.255.250/32 dev eth0');
    const conf = miniupnpdConfig(site('u'), plan.backbone, { leaseFile: '/tmp/x/leases' }, 'uuid');
    expect(conf).toContain('enable_upnp=no\n');
    expect(conf).toContain('enable_natpmp=yes\n');
    expect(conf).toContain('listening_ip=lan\n');
    expect(conf).toContain(`ext_stun_host=${plan.backbone.stunIp}\n`);
    expect(conf).toContain(`allow 1024-65535 ${site('u').lanCidr} 1024-65535\n`);
  });
});
