/**
 * Port mapping with real node processes in the NAT lab (issue 3, item 4). A node behind the
 * miniupnpd router maps its listening port (UPnP-IGD on one router, NAT-PMP on another); a node
 * behind a different NAT, which cannot be dialled at all, reaches it on the mapped address with no
 * relay; bytes cross intact; the mapping is gone from the router once the node stops.
 * Needs root and `npm run build` (nodes run from dist/); see test/lab/README.md.
 */
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import { type LabNodeProcess, startLabNode } from '../helpers/lab-node.js';
import { eventually, testSwarmKey } from '../helpers/node-process.js';
import {
  createLab,
  describeLab,
  type Lab,
  type LabRouter,
  labTool,
  startPortMapper,
  startTcpServer,
  tcpProbe,
} from './index.js';

const KEY_ENV = 'PEERTUNNEL_LAB_KEY';
const env = { [KEY_ENV]: testSwarmKey() };
const NODE_PORT = 4001;
const ECHO_PORT = 7000;
const BYTES = 16 * 1024 * 1024;

interface HashResult {
  ok: boolean;
  sent: number;
  received: number;
  sentSha256: string;
  receivedSha256: string;
  error?: string;
}

/** miniupnpd's DNAT rules (its nftables chains) that forward to `ip:port`. */
async function forwardingRules(router: LabRouter, ip: string, port: number): Promise<string[]> {
  const r = await router.exec('nft', ['list', 'table', 'inet', 'miniupnpd']);
  expect(r.code).toBe(0);
  return r.stdout.split('\n').filter((l) => l.includes('dnat') && l.includes(`${ip}:${port}`));
}

describeLab('port mapping: a node behind the miniupnpd router maps its port and is dialled on it', () => {
  let lab: Lab;
  let relay: LabNodeProcess;
  const nodes: LabNodeProcess[] = [];
  let base: NodeConfigInput;

  beforeAll(async () => {
    lab = await createLab({
      relays: 1,
      sites: [
        { name: 'u', nat: 'upnp', hosts: 2, portMapping: { upnp: true, natpmp: false } },
        { name: 'p', nat: 'upnp', hosts: 2, portMapping: { upnp: false, natpmp: true } },
        { name: 'a', nat: 'eim' },
      ],
    });
    base = {
      swarmKey: { env: KEY_ENV },
      listen: [`/ip4/0.0.0.0/tcp/${NODE_PORT}`],
      publicRanges: [...lab.publicRanges],
      log: { level: 'debug' },
    };
    relay = await startLabNode(lab.relay(0), { ...base, role: 'relay' }, { env });
    nodes.push(relay);
  });

  afterAll(async () => {
    await Promise.allSettled(nodes.map((n) => n.kill()));
    await lab?.stop();
  });

  test.each([
    ['upnp', 'u', false],
    ['natpmp', 'p', false],
    ['upnp', 'u', true],
  ] as const)(
    '%s (site %s, external port taken by another host: %s): mapped, announced, dialled directly from another NATed site, removed on stop',
    async (protocol, site, taken) => {
      const host = lab.host(site, 0);
      const router = lab.router(site);
      const service = `echo-${site}-${nodes.length}`;
      expect(await forwardingRules(router, host.ip, NODE_PORT)).toEqual([]);
      // Another host of the site holds external port NODE_PORT: the gateway must give us another one,
      // and removing ours (UPnP deletes by external port) must leave the neighbour's alone.
      const neighbour = taken
        ? await startPortMapper(lab.host(site, 1), {
            protocol: protocol === 'upnp' ? 'upnp' : 'pmp',
            port: NODE_PORT,
          })
        : undefined;
      if (neighbour !== undefined) expect(neighbour.mapping.externalPort).toBe(NODE_PORT);

      const echo = await startTcpServer(host, ECHO_PORT, '127.0.0.1');
      const t0 = Date.now();
      const exposer = await startLabNode(
        host,
        {
          ...base,
          bootstrap: relay.addresses,
          nat: { upnp: protocol === 'upnp', natPmp: protocol === 'natpmp' },
          expose: [{ name: service, port: ECHO_PORT }],
        },
        { env },
      );
      nodes.push(exposer);

      // Mapped on the router, external address learned; the same external port when it was free.
      const created = await exposer.waitFor((l) => l.event === 'port_mapping_created', 20_000);
      const mappedIn = Date.now() - t0;
      const externalPort = Number(/\/tcp\/(\d+)$/.exec(String(created.external))?.[1]);
      if (taken) expect(externalPort).not.toBe(NODE_PORT);
      else expect(externalPort).toBe(NODE_PORT);
      const external = `/ip4/${router.publicIp}/tcp/${externalPort}`;
      expect(created).toMatchObject({
        protocol,
        gateway: router.lanIp,
        internal: `${host.ip}:${NODE_PORT}`,
        external,
      });
      expect(await forwardingRules(router, host.ip, NODE_PORT)).toHaveLength(1);
      if (protocol === 'upnp') expect(router.miniupnpdLog()).toMatch(/AddAnyPortMapping/);

      // Announced: the mapped address is one of the node's own, and /status and metrics say so.
      const status = await exposer.status();
      expect(status.portMapping).toMatchObject({
        enabled: [protocol],
        state: 'mapped',
        protocol,
        gateway: router.lanIp,
        internal: `${host.ip}:${NODE_PORT}`,
        external,
      });
      expect(Date.parse(status.portMapping?.expires ?? '') - Date.now()).toBeGreaterThan(60_000);
      expect(status.addresses).toContain(`${external}/p2p/${exposer.peerId}`);
      expect(await exposer.metric('peertunnel_port_mappings', { protocol, state: 'active' })).toBe(1);
      expect(
        await exposer.metric('peertunnel_port_mapping_operations_total', {
          protocol,
          operation: 'map',
          result: 'ok',
        }),
      ).toBe(1);

      // A node behind another NAT (undialable itself) forwards to the service: it can only have
      // reached the exposer by dialling the mapped address.
      const client = lab.host('a');
      const localPort = 7100 + nodes.length;
      const t1 = Date.now();
      const forwarder = await startLabNode(
        client,
        { ...base, bootstrap: relay.addresses, forward: [{ name: service, localPort }] },
        { env },
      );
      nodes.push(forwarder);
      const result = await eventually(
        async () => {
          const r = await client.exec(
            process.execPath,
            [labTool('hash-client.ts'), '127.0.0.1', String(localPort), String(BYTES), '--timeout', '20000'],
            { timeoutMs: 30_000 },
          );
          const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
          const parsed = line === undefined ? undefined : (JSON.parse(line) as HashResult);
          // The forward answers with a closed connection until the DHT lookup has found a provider.
          return parsed?.ok === true ? parsed : undefined;
        },
        30_000,
        `${BYTES} bytes echoed through the forward`,
      );
      expect(result.received).toBe(BYTES);
      expect(result.receivedSha256).toBe(result.sentSha256);
      const crossedIn = Date.now() - t1;

      // The path: a direct connection to router:mapped port on the forwarder's side, an inbound
      // port-mapped one from the other router on the exposer's side; no relay anywhere.
      const fStatus = await forwarder.status();
      const toExposer = fStatus.peers.filter((p) => p.peer === exposer.peerId);
      expect(toExposer).toEqual([
        expect.objectContaining({
          path: 'direct',
          remoteAddr: `${external}/p2p/${exposer.peerId}`,
          direction: 'outbound',
        }),
      ]);
      const eStatus = await exposer.status();
      const fromForwarder = eStatus.peers.filter((p) => p.peer === forwarder.peerId);
      expect(fromForwarder).toEqual([expect.objectContaining({ path: 'port_mapped', direction: 'inbound' })]);
      expect(fromForwarder[0]?.remoteAddr.startsWith(`/ip4/${lab.router('a').publicIp}/tcp/`)).toBe(true);
      expect(await exposer.metric('peertunnel_connections', { path: 'port_mapped' })).toBe(1);
      expect(await forwarder.metric('peertunnel_connections', { path: 'relayed' })).toBe(0);
      expect(await exposer.metric('peertunnel_connections', { path: 'relayed' })).toBe(0);

      // Stopping the node removes the mapping: miniupnpd holds no rule for it, and with something
      // listening on the host's port again, the router no longer forwards to it.
      await forwarder.stop();
      expect(await exposer.stop()).toBe(0);
      expect(exposer.logs.some((l) => l.event === 'port_mapping_removed')).toBe(true);
      expect(await forwardingRules(router, host.ip, NODE_PORT)).toEqual([]);
      await echo.stop();
      const listener = await startTcpServer(host, NODE_PORT);
      const probe = await tcpProbe(lab.relay(0), [`${router.publicIp}:${externalPort}`], {
        timeoutMs: 1_500,
      });
      expect(probe[0]?.ok).toBe(false);
      await listener.stop();
      if (neighbour !== undefined) {
        // The neighbour's mapping is untouched by our removal.
        const neighbourHost = lab.host(site, 1);
        expect(await forwardingRules(router, neighbourHost.ip, NODE_PORT)).toHaveLength(1);
        await neighbour.stop();
        expect(await forwardingRules(router, neighbourHost.ip, NODE_PORT)).toEqual([]);
      }
      process.stdout.write(
        `port mapping ${protocol}: mapped in ${mappedIn} ms, ${BYTES} bytes crossed ${crossedIn} ms after the forwarder started\n`,
      );
    },
  );
});
