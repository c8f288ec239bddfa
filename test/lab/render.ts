/**
 * Pure renderers: the plan in, the text of every `ip -batch`, iptables-restore, nft and miniupnpd
 * configuration out. Kept apart from the I/O so they can be read and tested on their own.
 */
import type { BackbonePlan, HostPlan, LabPlan, SitePlan } from './plan.js';

/** SSDP's multicast group: UPnP discovery must reach the router over the LAN. */
export const SSDP_GROUP = '239.255.255.250';

/** Per-namespace kernel settings, written through /proc/sys by a shell inside the namespace. */
export interface SysctlSetting {
  readonly key: string;
  readonly value: string;
}

export function sysctlsFor(role: 'backbone' | 'router' | 'host'): SysctlSetting[] {
  const settings: SysctlSetting[] = [
    // IPv4 only: interfaces created after this get no IPv6 (lo keeps ::1), so nothing in the lab
    // can wander off over link-local IPv6 or SLAAC, and address lists stay deterministic.
    { key: 'net/ipv6/conf/default/disable_ipv6', value: '1' },
  ];
  if (role !== 'host') {
    settings.push({ key: 'net/ipv4/ip_forward', value: '1' });
  }
  return settings;
}

/** One shell line that writes the settings; keys are constants above, never user input. */
export function sysctlScript(settings: readonly SysctlSetting[]): string {
  return settings.map((s) => `echo ${s.value} > /proc/sys/${s.key}`).join(' && ');
}

/** Backbone: two bridges (relay segment, site WAN segment), veths into every relay and router. */
export function backboneBatch(plan: LabPlan): string[] {
  const b: BackbonePlan = plan.backbone;
  const lines = [
    'link set lo up',
    `link add ${b.relayBridge} type bridge`,
    `addr add ${b.relayGateway}/24 dev ${b.relayBridge}`,
    `link set ${b.relayBridge} up`,
    `link add ${b.siteBridge} type bridge`,
    `addr add ${b.siteGateway}/24 dev ${b.siteBridge}`,
    `link set ${b.siteBridge} up`,
  ];
  for (const relay of plan.relays) {
    // Created directly with its peer inside the relay namespace: nothing touches the host's.
    lines.push(`link add ${relay.peerIface} type veth peer name ${relay.iface} netns ${relay.ns}`);
    lines.push(`link set ${relay.peerIface} master ${b.relayBridge}`);
    lines.push(`link set ${relay.peerIface} up`);
  }
  for (const site of plan.sites) {
    lines.push(`link add ${site.backboneIface} type veth peer name ${site.wanIface} netns ${site.ns}`);
    lines.push(`link set ${site.backboneIface} master ${b.siteBridge}`);
    lines.push(`link set ${site.backboneIface} up`);
  }
  for (const site of plan.sites) {
    if (site.nat === 'none') {
      lines.push(`route add ${site.lanCidr} via ${site.publicIp}`);
    }
  }
  return lines;
}

export function routerBatch(site: SitePlan, siteGateway: string): string[] {
  const lines = [
    'link set lo up',
    `addr add ${site.publicIp}/24 dev ${site.wanIface}`,
    `link set ${site.wanIface} up`,
    `route add default via ${siteGateway}`,
    // A bridge even for one host, so more hosts and multicast behave the same. Snooping off: with
    // no querier on the LAN it could otherwise stop forwarding SSDP to the router.
    `link add ${site.lanIface} type bridge mcast_snooping 0`,
    `addr add ${site.lanIp}/${site.lanPrefixLength} dev ${site.lanIface}`,
    `link set ${site.lanIface} up`,
  ];
  for (const host of site.hosts) {
    lines.push(`link add ${host.peerIface} type veth peer name ${host.iface} netns ${host.ns}`);
    lines.push(`link set ${host.peerIface} master ${site.lanIface}`);
    lines.push(`link set ${host.peerIface} up`);
  }
  if (site.portMapping) {
    // miniupnpd's SSDP NOTIFYs and answers belong on the LAN, never on the WAN's default route.
    lines.push(`route add ${SSDP_GROUP}/32 dev ${site.lanIface}`);
  }
  return lines;
}

export function hostBatch(host: HostPlan): string[] {
  return [
    'link set lo up',
    `addr add ${host.ip}/${host.prefixLength} dev ${host.iface}`,
    `link set ${host.iface} up`,
    `route add default via ${host.gateway}`,
    `route add ${SSDP_GROUP}/32 dev ${host.iface}`,
  ];
}

/**
 * The router's netfilter rules, for `iptables-nft-restore`.
 *
 * NAT sites drop unsolicited traffic from the WAN, as a home router does (a silent drop, not a
 * RST: hole punching must see what it sees on real NATs). Inbound traffic passes only when it
 * belongs to a connection made from inside, or when a port mapping (miniupnpd's DNAT) sent it.
 */
export function routerIptables(site: SitePlan): string {
  if (site.nat === 'none') {
    return [
      '*filter',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      'COMMIT',
      '',
    ].join('\n');
  }
  const masquerade = `-A POSTROUTING -s ${site.lanCidr} -o ${site.wanIface} -j MASQUERADE${
    site.nat === 'symmetric' ? ' --random-fully' : ''
  }`;
  return [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    masquerade,
    'COMMIT',
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    `-A INPUT -i ${site.wanIface} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT`,
    `-A INPUT -i ${site.wanIface} -p icmp -j ACCEPT`,
    `-A INPUT -i ${site.wanIface} -j DROP`,
    `-A FORWARD -i ${site.wanIface} -m conntrack --ctstate ESTABLISHED,RELATED,DNAT -j ACCEPT`,
    `-A FORWARD -i ${site.wanIface} -j DROP`,
    'COMMIT',
    '',
  ].join('\n');
}

/** Names of miniupnpd's nftables objects (set in its config, created by `miniupnpdNft`). */
export const MINIUPNPD_NFT = {
  table: 'miniupnpd',
  forwardChain: 'miniupnpd',
  natChain: 'prerouting_miniupnpd',
  postroutingChain: 'postrouting_miniupnpd',
} as const;

/**
 * The nftables skeleton miniupnpd (Debian's nftables build) fills in: it adds rules to these
 * chains but does not create them (Debian's unit does that with nft_init.sh, which we do not run).
 * The forward chain accepts by default: filtering is the iptables rules' job, and a DNAT from a
 * mapping is let through there by `--ctstate DNAT`.
 */
export function miniupnpdNft(): string {
  const n = MINIUPNPD_NFT;
  return `table inet ${n.table} {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump ${n.forwardChain}
  }
  chain ${n.forwardChain} {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump ${n.natChain}
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump ${n.postroutingChain}
  }
  chain ${n.natChain} {
  }
  chain ${n.postroutingChain} {
  }
}
`;
}

export interface MiniupnpdPaths {
  readonly leaseFile: string;
}

/**
 * miniupnpd's configuration. Why STUN: miniupnpd 2.3 refuses to forward ports when its external
 * address is reserved, and every documentation range is. Asking the lab's STUN responder makes it
 * learn the same address by STUN, which it accepts as "1:1, no filtering" and forwards.
 */
export function miniupnpdConfig(
  site: SitePlan,
  backbone: BackbonePlan,
  paths: MiniupnpdPaths,
  uuid: string,
): string {
  const pm = site.portMapping ?? { upnp: true, natpmp: true };
  const n = MINIUPNPD_NFT;
  return [
    `ext_ifname=${site.wanIface}`,
    `listening_ip=${site.lanIface}`,
    'port=0',
    `enable_upnp=${pm.upnp ? 'yes' : 'no'}`,
    `enable_natpmp=${pm.natpmp ? 'yes' : 'no'}`,
    'ext_perform_stun=yes',
    `ext_stun_host=${backbone.stunIp}`,
    `ext_stun_port=${backbone.stunPort}`,
    'secure_mode=yes',
    'system_uptime=no',
    'notify_interval=30',
    'clean_ruleset_interval=0',
    `lease_file=${paths.leaseFile}`,
    `uuid=${uuid}`,
    `upnp_table_name=${n.table}`,
    `upnp_nat_table_name=${n.table}`,
    `upnp_forward_chain=${n.forwardChain}`,
    `upnp_nat_chain=${n.natChain}`,
    `upnp_nat_postrouting_chain=${n.postroutingChain}`,
    `allow 1024-65535 ${site.lanCidr} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n');
}
