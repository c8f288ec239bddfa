/**
 * Port mapping, the parts that need no gateway: default-route parsing, the local address facing a
 * gateway, lease timing, listen-port choice, the inbound-via-mapping rule, SOAP answers, and the
 * service's loop (map, announce, renew, lose, fall back, remove) against fake protocol clients.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Connection } from '@libp2p/interface';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { Counter, Gauge, Registry } from 'prom-client';
import type { PathKind } from '../../../../sidecar/admin/metrics.js';
import { silentLogger } from '../../../../sidecar/node/logger.js';
import {
  type GrantedMapping,
  type MappedPort,
  type MappingClient,
  type MappingClients,
  type MappingRequest,
  type PortMappingProtocol,
  soapDeviceOf,
  soapField,
} from '../../../../sidecar/port-mapping/clients.js';
import { PortMappingError } from '../../../../sidecar/port-mapping/errors.js';
import {
  addressFacing,
  parseDefaultRoutes,
  procRouteHexToIPv4,
} from '../../../../sidecar/port-mapping/gateway.js';
import {
  DEFAULT_LEASE_SECONDS,
  listenPortFor,
  MIN_LEASE_SECONDS,
  nextRenewalAt,
  normalizeLeaseSeconds,
  REMAP_BACKOFF_MAX_MS,
  RENEW_RETRY_MAX_MS,
  RENEW_RETRY_MIN_MS,
  remapBackoffMs,
  viaPortMapping,
} from '../../../../sidecar/port-mapping/plan.js';
import {
  type PortMapper,
  type PortMapperComponents,
  type PortMappingAddressManager,
  portMapper,
} from '../../../../sidecar/port-mapping/port-mapper.js';

const PROC_NET_ROUTE = [
  'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
  'wlan0\t00000000\t0164A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0',
  'eth0\t00000000\t011212C6\t0003\t0\t0\t100\t00000000\t0\t0\t0',
  'eth0\t001212C6\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0',
  'tun0\t00000000\t0A0A0A0A\t0002\t0\t0\t0\t00000000\t0\t0\t0',
  'lo9\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0',
  '',
].join('\n');

describe('default gateway from /proc/net/route', () => {
  it.each([
    ['0102A8C0', '192.168.2.1'],
    ['011212C6', '198.18.18.1'],
    ['00000000', '0.0.0.0'],
    ['FFFFFFFF', '255.255.255.255'],
    ['0102A8C', undefined],
    ['zz02A8C0', undefined],
  ])('%s is %s', (hex, ip) => {
    expect(procRouteHexToIPv4(hex)).toBe(ip);
  });

  it('takes default routes that are up and via a gateway, lowest metric first', () => {
    expect(parseDefaultRoutes(PROC_NET_ROUTE)).toEqual([
      { iface: 'eth0', gateway: '198.18.18.1', metric: 100 },
      { iface: 'wlan0', gateway: '192.168.100.1', metric: 600 },
    ]);
  });

  it('has none for a header alone, garbage, or only on-link routes', () => {
    expect(parseDefaultRoutes('')).toEqual([]);
    expect(parseDefaultRoutes('Iface\tDestination\n')).toEqual([]);
    expect(parseDefaultRoutes('x\ny z\n')).toEqual([]);
    expect(
      parseDefaultRoutes(
        PROC_NET_ROUTE.split('\n')
          .filter((l) => !l.includes('\t0003\t'))
          .join('\n'),
      ),
    ).toEqual([]);
  });
});

describe('the local address facing a gateway', () => {
  const iface = (address: string, netmask: string, internal = false) => ({
    address,
    netmask,
    family: 'IPv4' as const,
    mac: '00:00:00:00:00:00',
    internal,
    cidr: null,
  });
  const interfaces = {
    lo: [iface('127.0.0.1', '255.0.0.0', true)],
    wan: [iface('203.0.113.7', '255.255.255.0')],
    lan: [iface('198.18.1.10', '255.255.255.0')],
  };

  it.each([
    ['198.18.1.1', '198.18.1.10'],
    ['203.0.113.1', '203.0.113.7'],
    ['198.18.2.1', undefined],
    ['127.0.0.1', undefined],
    ['not-an-ip', undefined],
  ])('gateway %s: %s', (gateway, address) => {
    expect(addressFacing(gateway, interfaces)).toBe(address);
  });
});

describe('lease timing', () => {
  const lease = { grantedAt: 1_000_000, leaseSeconds: 600 };
  const expiry = 1_000_000 + 600_000;

  it('renews at half-life while renewals succeed', () => {
    expect(nextRenewalAt(lease, 1_000_000, 0)).toBe(1_300_000);
    // Woken late: renew now, not in the past.
    expect(nextRenewalAt(lease, 1_400_000, 0)).toBe(1_400_000);
  });

  it('after a failure retries within a quarter of the time left, clamped, never after expiry', () => {
    // 300 s left: a quarter is 75 s, clamped to the 30 s maximum.
    expect(nextRenewalAt(lease, 1_300_000, 1)).toBe(1_300_000 + RENEW_RETRY_MAX_MS);
    // 20 s left: a quarter is 5 s.
    expect(nextRenewalAt(lease, expiry - 20_000, 2)).toBe(expiry - 15_000);
    // 2 s left: a quarter is 0.5 s, clamped up to 1 s.
    expect(nextRenewalAt(lease, expiry - 2_000, 3)).toBe(expiry - 2_000 + RENEW_RETRY_MIN_MS);
    // 0.5 s left: the minimum would pass expiry, so at expiry (one last try).
    expect(nextRenewalAt(lease, expiry - 500, 4)).toBe(expiry);
  });

  it('has no renewal once the lease ran out', () => {
    expect(nextRenewalAt(lease, expiry, 0)).toBeUndefined();
    expect(nextRenewalAt(lease, expiry + 1, 5)).toBeUndefined();
  });

  it('backs off exponentially between attempts to map, up to a maximum', () => {
    expect([1, 2, 3, 4].map(remapBackoffMs)).toEqual([5_000, 10_000, 20_000, 40_000]);
    expect(remapBackoffMs(0)).toBe(5_000);
    expect(remapBackoffMs(7)).toBe(REMAP_BACKOFF_MAX_MS);
    expect(remapBackoffMs(1_000)).toBe(REMAP_BACKOFF_MAX_MS);
  });

  it('asks for whole seconds, at least the minimum', () => {
    expect(normalizeLeaseSeconds(undefined)).toBe(DEFAULT_LEASE_SECONDS);
    expect(normalizeLeaseSeconds(Number.NaN)).toBe(DEFAULT_LEASE_SECONDS);
    expect(normalizeLeaseSeconds(120.4)).toBe(120);
    expect(normalizeLeaseSeconds(0)).toBe(MIN_LEASE_SECONDS);
  });
});

describe('which port to map', () => {
  it.each([
    [['/ip4/127.0.0.1/tcp/4001', '/ip4/198.18.1.10/tcp/4001'], '198.18.1.10', 4001],
    [['/ip4/198.18.1.10/tcp/4002/p2p/12D3KooWabc'], '198.18.1.10', 4002],
    [['/ip4/0.0.0.0/tcp/4003'], '198.18.1.10', 4003],
    [['/ip4/198.18.1.10/tcp/4004/ws', '/ip4/198.18.1.10/tcp/4005'], '198.18.1.10', 4005],
    [['/ip4/127.0.0.1/tcp/4001'], '198.18.1.10', undefined],
    [['/ip6/::/tcp/4001', '/ip4/198.18.1.10/udp/4001/quic-v1'], '198.18.1.10', undefined],
    [[], '198.18.1.10', undefined],
  ])('%j at %s: %s', (addrs, host, port) => {
    expect(listenPortFor(addrs, host)).toBe(port);
  });
});

describe('an inbound connection through the mapping', () => {
  const mapping = { internalHost: '198.18.1.10', externalIp: '198.51.100.10' };
  const isPublic = (ip: string) => ip.startsWith('198.51.100.') || ip.startsWith('203.0.113.');
  const inbound = {
    direction: 'inbound',
    relayed: false,
    remoteIp: '198.51.100.12',
    alreadyMarked: false,
  } as const;

  it.each([
    ['inbound from a public address while mapped', inbound, mapping, true],
    ['no mapping', inbound, undefined, false],
    ['the "mapping" is our own address (no NAT)', inbound, { internalHost: 'x', externalIp: 'x' }, false],
    ['outbound', { ...inbound, direction: 'outbound' }, mapping, false],
    ['relayed', { ...inbound, relayed: true }, mapping, false],
    ['from the LAN', { ...inbound, remoteIp: '198.18.1.11' }, mapping, false],
    ['no remote IP', { ...inbound, remoteIp: undefined }, mapping, false],
    ['already marked (hole punched)', { ...inbound, alreadyMarked: true }, mapping, false],
  ] as const)('%s', (_name, facts, m, expected) => {
    expect(viaPortMapping(facts, m, isPublic)).toBe(expected);
  });
});

describe('UPnP SOAP plumbing', () => {
  it('reads a field of a namespaced response, and nothing from anything else', () => {
    const body = {
      'u:AddAnyPortMappingResponse': { '@': { 'xmlns:u': 'urn:x' }, NewReservedPort: '4002' },
    };
    expect(soapField(body, 'AddAnyPortMapping', 'NewReservedPort')).toBe('4002');
    expect(
      soapField(
        { AddAnyPortMappingResponse: { NewReservedPort: 4003 } },
        'AddAnyPortMapping',
        'NewReservedPort',
      ),
    ).toBe('4003');
    expect(soapField(body, 'GetExternalIPAddress', 'NewExternalIPAddress')).toBeUndefined();
    expect(soapField(body, 'AddAnyPortMapping', 'Missing')).toBeUndefined();
    expect(
      soapField({ 'u:AddAnyPortMappingResponse': '' }, 'AddAnyPortMapping', 'NewReservedPort'),
    ).toBeUndefined();
    expect(soapField(undefined, 'AddAnyPortMapping', 'NewReservedPort')).toBeUndefined();
  });

  it("finds the library's SOAP device, or reports that it changed shape", async () => {
    const calls: unknown[][] = [];
    const device = {
      run(...args: unknown[]) {
        calls.push(args);
        return Promise.resolve({ ok: this === device });
      },
    };
    const found = soapDeviceOf({ gateway: device });
    expect(found).toBeDefined();
    const signal = AbortSignal.timeout(1_000);
    await expect(found?.run('svc', 'Act', [['A', 1]], { signal })).resolves.toEqual({ ok: true });
    expect(calls).toEqual([['svc', 'Act', [['A', 1]], { signal }]]);
    expect(soapDeviceOf({})).toBeUndefined();
    expect(soapDeviceOf({ gateway: null })).toBeUndefined();
    expect(soapDeviceOf({ gateway: { run: 'no' } })).toBeUndefined();
  });
});

// ---- the service against fake clients ----

/** Stopped after each test, so a failed assertion cannot leave a loop running. */
const running: PortMapper[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((m) => m.stop()));
});

interface AddressCall {
  op: 'add' | 'remove' | 'confirm';
  args: unknown[];
}

class FakeAddresses implements PortMappingAddressManager {
  calls: AddressCall[] = [];
  constructor(private readonly transport: string[]) {}
  getAddressesWithMetadata(): Array<{ multiaddr: Multiaddr; type: string }> {
    return this.transport.map((a) => ({ multiaddr: multiaddr(a), type: 'transport' }));
  }
  addPublicAddressMapping(...args: unknown[]): void {
    this.calls.push({ op: 'add', args });
  }
  removePublicAddressMapping(...args: unknown[]): void {
    this.calls.push({ op: 'remove', args });
  }
  confirmObservedAddr(addr: Multiaddr, options?: { ttl?: number }): void {
    this.calls.push({ op: 'confirm', args: [addr.toString(), options?.ttl] });
  }
}

class FakeClient implements MappingClient {
  maps: MappingRequest[] = [];
  unmaps: MappedPort[] = [];
  closed = false;
  /** Answers to map(), in order; the last one repeats. An Error is thrown. */
  constructor(
    readonly protocol: PortMappingProtocol,
    readonly gateway: string,
    private readonly answers: Array<GrantedMapping | Error>,
  ) {}
  async map(request: MappingRequest): Promise<GrantedMapping> {
    this.maps.push(request);
    const answer = this.answers[Math.min(this.maps.length - 1, this.answers.length - 1)];
    if (answer === undefined || answer instanceof Error) throw answer ?? new Error('no answer');
    return answer;
  }
  async unmap(mapped: MappedPort): Promise<void> {
    this.unmaps.push(mapped);
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

function setup(
  init: { upnp?: boolean; natPmp?: boolean; leaseSeconds?: number },
  clients: Partial<MappingClients>,
) {
  const registry = new Registry();
  const metrics = {
    portMappings: new Gauge({
      name: 'pm',
      help: 'h',
      labelNames: ['protocol', 'state'] as const,
      registers: [registry],
    }),
    portMappingOperations: new Counter({
      name: 'pmo',
      help: 'h',
      labelNames: ['protocol', 'operation', 'result'] as const,
      registers: [registry],
    }),
  };
  const addresses = new FakeAddresses(['/ip4/127.0.0.1/tcp/4001', '/ip4/198.18.1.10/tcp/4001']);
  let listener: ((c: Connection) => void) | undefined;
  const marks = new Map<Connection, PathKind>();
  const components: PortMapperComponents = {
    addressManager: addresses,
    onConnection: (l) => {
      listener = l;
      return () => {
        listener = undefined;
      };
    },
    paths: {
      mark: (c, p) => marks.set(c, p),
      pathOf: (c) => marks.get(c) ?? 'direct',
    },
    logger: silentLogger(),
    metrics,
    clients: {
      upnp:
        clients.upnp ??
        (() => Promise.reject(new PortMappingError('upnp', 'no_gateway', 'no UPnP gateway in this test'))),
      natpmp: clients.natpmp ?? (() => new FakeClient('natpmp', '198.18.1.1', [new Error('unused')])),
    },
    localAddressFor: async () => '198.18.1.10',
    defaultGateway: async () => '198.18.1.1',
  };
  const mapper = portMapper({ ...init, publicRanges: ['198.51.100.0/24'] })(components);
  running.push(mapper);
  const metric = async (name: string, labels: Record<string, string>) =>
    (await registry.getSingleMetric(name)?.get())?.values.find((v) =>
      Object.entries(labels).every(([k, val]) => v.labels[k] === val),
    )?.value;
  return { mapper, addresses, marks, metric, connect: (c: Connection) => listener?.(c) };
}

function fakeConnection(direction: 'inbound' | 'outbound', remote: string): Connection {
  return {
    direction,
    remoteAddr: multiaddr(remote),
    remotePeer: { toString: () => '12D3KooWfake' },
    limits: undefined,
  } as unknown as Connection;
}

async function until(check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const GRANTED: GrantedMapping = { externalIp: '198.51.100.10', externalPort: 4001, leaseSeconds: 2 };

describe('port mapper service', () => {
  it('does nothing when both protocols are off', async () => {
    const { mapper } = setup({}, {});
    await mapper.start();
    expect(mapper.status()).toEqual({ enabled: [], state: 'disabled', renewals: 0 });
    await mapper.stop();
  });

  it('maps the listening port, announces it, renews at half-life, marks inbound, and removes it on stop', async () => {
    const client = new FakeClient('upnp', '198.18.1.1', [GRANTED]);
    const { mapper, addresses, marks, metric, connect } = setup(
      { upnp: true, leaseSeconds: 2 },
      { upnp: async () => client },
    );
    await mapper.start();
    await until(() => mapper.status().state === 'mapped');
    expect(client.maps[0]).toMatchObject({
      internalHost: '198.18.1.10',
      internalPort: 4001,
      externalPort: 4001,
      leaseSeconds: 2,
    });
    expect(mapper.status()).toMatchObject({
      enabled: ['upnp'],
      state: 'mapped',
      protocol: 'upnp',
      gateway: '198.18.1.1',
      internal: '198.18.1.10:4001',
      external: '/ip4/198.51.100.10/tcp/4001',
    });
    expect(addresses.calls[0]).toEqual({
      op: 'add',
      args: ['198.18.1.10', 4001, '198.51.100.10', 4001, 'tcp'],
    });
    expect(addresses.calls[1]?.op).toBe('confirm');
    expect(addresses.calls[1]?.args[0]).toBe('/ip4/198.51.100.10/tcp/4001');
    expect(await metric('pm', { protocol: 'upnp', state: 'active' })).toBe(1);

    // Inbound from a public address: port_mapped; from the LAN or outbound: left alone.
    const viaMapping = fakeConnection('inbound', '/ip4/198.51.100.12/tcp/50000');
    const fromLan = fakeConnection('inbound', '/ip4/198.18.1.11/tcp/50000');
    const outbound = fakeConnection('outbound', '/ip4/198.51.100.12/tcp/4001');
    for (const c of [viaMapping, fromLan, outbound]) connect(c);
    expect(marks.get(viaMapping)).toBe('port_mapped');
    expect(marks.has(fromLan)).toBe(false);
    expect(marks.has(outbound)).toBe(false);

    // A 2 s lease is renewed after 1 s, asking for the port we were given.
    await until(() => mapper.status().renewals >= 1, 3_000);
    expect(client.maps[1]).toMatchObject({ externalPort: 4001, internalPort: 4001 });
    expect(addresses.calls.filter((c) => c.op === 'add')).toHaveLength(1);
    expect(
      await metric('pmo', { protocol: 'upnp', operation: 'renew', result: 'ok' }),
    ).toBeGreaterThanOrEqual(1);

    await mapper.stop();
    expect(client.unmaps).toEqual([{ internalHost: '198.18.1.10', internalPort: 4001, externalPort: 4001 }]);
    expect(client.closed).toBe(true);
    expect(addresses.calls.at(-1)).toEqual({
      op: 'remove',
      args: ['198.18.1.10', 4001, '198.51.100.10', 4001, 'tcp'],
    });
    expect(mapper.status().state).toBe('stopped');
    expect(await metric('pm', { protocol: 'upnp', state: 'active' })).toBe(0);
  });

  it('removes the external port the gateway chose, not the internal one', async () => {
    const client = new FakeClient('upnp', '198.18.1.1', [
      { ...GRANTED, externalPort: 52000, leaseSeconds: 600 },
    ]);
    const { mapper } = setup({ upnp: true }, { upnp: async () => client });
    await mapper.start();
    await until(() => mapper.status().state === 'mapped');
    expect(mapper.status().external).toBe('/ip4/198.51.100.10/tcp/52000');
    await mapper.stop();
    expect(client.unmaps).toEqual([{ internalHost: '198.18.1.10', internalPort: 4001, externalPort: 52000 }]);
  });

  it('falls back to NAT-PMP on the default gateway when no UPnP gateway answers', async () => {
    const pmp = new FakeClient('natpmp', '198.18.1.1', [{ ...GRANTED, leaseSeconds: 600 }]);
    const gateways: string[] = [];
    const { mapper, metric } = setup(
      { upnp: true, natPmp: true },
      {
        natpmp: (gateway) => {
          gateways.push(gateway);
          return pmp;
        },
      },
    );
    await mapper.start();
    await until(() => mapper.status().state === 'mapped');
    expect(gateways).toEqual(['198.18.1.1']);
    expect(mapper.status()).toMatchObject({ enabled: ['upnp', 'natpmp'], protocol: 'natpmp' });
    expect(await metric('pm', { protocol: 'upnp', state: 'failed' })).toBe(1);
    expect(await metric('pm', { protocol: 'natpmp', state: 'active' })).toBe(1);
    await mapper.stop();
    expect(pmp.unmaps).toHaveLength(1);
  });

  it('withdraws the address when renewals fail until the lease ends, then maps again', async () => {
    const client = new FakeClient('natpmp', '198.18.1.1', [
      GRANTED,
      new PortMappingError('natpmp', 'timeout', 'gone'),
      new PortMappingError('natpmp', 'timeout', 'gone'),
    ]);
    const next = new FakeClient('natpmp', '198.18.1.1', [
      { ...GRANTED, externalPort: 4100, leaseSeconds: 600 },
    ]);
    const made = [client, next];
    const { mapper, addresses } = setup(
      { natPmp: true, leaseSeconds: 2 },
      { natpmp: () => made.shift() ?? next },
    );
    await mapper.start();
    await until(() => mapper.status().state === 'mapped');
    // Renewal at 1 s fails; retries at 1.5 s (clamped to 1 s) and at expiry fail; lost at 2 s.
    await until(() => addresses.calls.some((c) => c.op === 'remove'), 4_000);
    expect(client.closed).toBe(true);
    expect(client.maps).toHaveLength(3);
    // Mapped again at once with a new client; the new address is announced.
    await until(() => mapper.status().external === '/ip4/198.51.100.10/tcp/4100', 2_000);
    expect(addresses.calls.filter((c) => c.op === 'add').map((c) => c.args[3])).toEqual([4001, 4100]);
    await mapper.stop();
    expect(next.unmaps).toEqual([{ internalHost: '198.18.1.10', internalPort: 4001, externalPort: 4100 }]);
  });

  it('reports a failure with reasons and keeps the node running when nothing maps', async () => {
    const { mapper, metric } = setup({ upnp: true }, {});
    await mapper.start();
    await until(() => mapper.status().state === 'failed');
    expect(mapper.status().error).toBeDefined();
    expect(await metric('pm', { protocol: 'upnp', state: 'failed' })).toBe(1);
    await mapper.stop();
    expect(mapper.status().state).toBe('stopped');
  });
});
