/**
 * The NAT lab itself, asserted on observable behaviour: what a server on the internet sees, what
 * connects and what does not, and what is left on the machine afterwards.
 * Needs root (see prereq.ts): skipped loudly without it, a failure under CI=true.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { cidrContains, FORBIDDEN_RANGES, LAB_RANGES } from './addresses.js';
import { runDir } from './cleanup.js';
import { run, waitForExit } from './exec.js';
import {
  createLab,
  describeLab,
  type Lab,
  listLabNamespaces,
  startPortMapper,
  startTcpServer,
  tcpProbe,
} from './index.js';

function splitAddress(address: string | undefined): { ip: string; port: number } {
  const [ip = '', port = ''] = (address ?? '').split(':');
  return { ip, port: Number(port) };
}

/** True when pid is gone (or a zombie nobody has reaped yet: it runs nothing and holds nothing). */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

function hostLinks(): string[] {
  const out = spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout ?? '';
  return out
    .split('\n')
    .map((l) => l.split(':')[1]?.trim() ?? '')
    .filter(Boolean)
    .sort();
}

describeLab('NAT lab: topology and NAT behaviour', () => {
  let lab: Lab;
  let linksBefore: string[];

  beforeAll(async () => {
    linksBefore = hostLinks();
    lab = await createLab({
      relays: 2,
      sites: [
        { name: 'a', nat: 'eim' },
        { name: 'b', nat: 'symmetric' },
        { name: 'u', nat: 'upnp', hosts: 2 },
        { name: 'p', nat: 'upnp', portMapping: { upnp: false, natpmp: true } },
        { name: 'n', nat: 'none' },
      ],
    });
  });

  afterAll(async () => {
    await lab?.stop();
  });

  test('nothing is linked to the host namespace; every address is a lab address; lo is up everywhere', async () => {
    expect(hostLinks()).toEqual(linksBefore);
    for (const ns of lab.namespaces) {
      const addrs = await run('ip', ['-n', ns, '-o', '-4', 'addr', 'show']);
      const ips = [...addrs.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1] ?? '');
      for (const ip of ips) {
        if (ip === '127.0.0.1') {
          continue;
        }
        expect(FORBIDDEN_RANGES.some((r) => cidrContains(r, ip))).toBe(false);
        expect(LAB_RANGES.some((r) => cidrContains(r, ip))).toBe(true);
      }
      const lo = await run('ip', ['-n', ns, '-o', 'link', 'show', 'lo']);
      expect(lo.stdout).toMatch(/[<,]UP[,>]/);
    }
    // What a spawned process prints is kept for failure messages.
    const talker = lab.host('a').spawn('sh', ['-c', 'echo to-stdout; echo to-stderr >&2']);
    expect(await waitForExit(talker, 5_000)).toBe(true);
    expect(lab.output(talker)).toContain('to-stdout');
    expect(lab.output(talker)).toContain('to-stderr');
    // 127.0.0.1 works inside a pod host.
    const host = lab.host('a');
    const server = await startTcpServer(host, 7050, '127.0.0.1');
    const [local] = await tcpProbe(host, ['127.0.0.1:7050']);
    expect(local?.ok).toBe(true);
    await server.stop();
  });

  test('endpoint-independent NAT: one local port, two internet hosts, the same external ip:port', async () => {
    const servers = await Promise.all([
      startTcpServer(lab.relay(0), 7000),
      startTcpServer(lab.relay(1), 7000),
    ]);
    const results = await tcpProbe(lab.host('a'), [`${lab.relay(0).ip}:7000`, `${lab.relay(1).ip}:7000`], {
      localPort: 41000,
    });
    expect(results.map((r) => r.ok)).toEqual([true, true]);
    const [first, second] = results.map((r) => splitAddress(r.observed));
    expect(first?.ip).toBe(lab.router('a').publicIp);
    expect(second).toEqual(first);
    await Promise.all(servers.map((s) => s.stop()));
  });

  test('symmetric NAT: one local port, two internet hosts, two different external ports', async () => {
    const servers = await Promise.all([
      startTcpServer(lab.relay(0), 7001),
      startTcpServer(lab.relay(1), 7001),
    ]);
    const results = await tcpProbe(lab.host('b'), [`${lab.relay(0).ip}:7001`, `${lab.relay(1).ip}:7001`], {
      localPort: 41001,
    });
    expect(results.map((r) => r.ok)).toEqual([true, true]);
    const [first, second] = results.map((r) => splitAddress(r.observed));
    expect(first?.ip).toBe(lab.router('b').publicIp);
    expect(second?.ip).toBe(lab.router('b').publicIp);
    expect(second?.port).not.toBe(first?.port);
    await Promise.all(servers.map((s) => s.stop()));
  });

  test('a NATed host is not reachable from the internet; it reaches the internet; a none site is reachable', async () => {
    const servers = await Promise.all([
      startTcpServer(lab.host('a'), 7100),
      startTcpServer(lab.host('b'), 7100),
      startTcpServer(lab.host('n'), 7100),
      startTcpServer(lab.relay(0), 7100),
    ]);
    const relay = lab.relay(0);
    const inbound = await tcpProbe(
      relay,
      [
        `${lab.router('a').publicIp}:7100`,
        `${lab.host('a').ip}:7100`,
        `${lab.router('b').publicIp}:7100`,
        `${lab.host('n').ip}:7100`,
      ],
      { timeoutMs: 1_500 },
    );
    expect(inbound.map((r) => r.ok)).toEqual([false, false, false, true]);
    // The NAT drops silently, as a home router does (no RST to learn from).
    expect(inbound[0]?.error).toBe('ETIMEDOUT');
    // No NAT on the way into a `none` site: the server sees the relay itself.
    expect(splitAddress(inbound[3]?.observed).ip).toBe(relay.ip);

    const outbound = await tcpProbe(lab.host('a'), [`${relay.ip}:7100`, `${lab.host('n').ip}:7100`]);
    expect(outbound.map((r) => r.ok)).toEqual([true, true]);
    await Promise.all(servers.map((s) => s.stop()));
  });

  test('sites cannot reach each other’s LANs, only what the other NAT maps', async () => {
    const server = await startTcpServer(lab.host('a'), 7150);
    const results = await tcpProbe(
      lab.host('b'),
      [`${lab.host('a').ip}:7150`, `${lab.router('a').publicIp}:7150`],
      {
        timeoutMs: 1_500,
      },
    );
    expect(results.map((r) => r.ok)).toEqual([false, false]);
    await server.stop();
  });

  test.each([
    ['upnp', 7200],
    ['pmp', 7300],
  ] as const)(
    'miniupnpd, %s through @achingbrain/nat-port-mapper: map, dial in, unmap',
    async (protocol, port) => {
      const host = lab.host('u', 1);
      const router = lab.router('u');
      const relay = lab.relay(0);
      const server = await startTcpServer(host, port);
      const target = `${router.publicIp}:${port}`;
      const before = await tcpProbe(relay, [target], { timeoutMs: 1_500 });
      expect(before[0]?.ok).toBe(false);

      const session = await startPortMapper(host, { protocol, port });
      expect(session.mapping).toMatchObject({
        externalHost: router.publicIp,
        externalPort: port,
        internalHost: host.ip,
        internalPort: port,
      });
      const mapped = await tcpProbe(relay, [target]);
      expect(mapped[0]?.ok).toBe(true);
      // A port mapping is a DNAT: the pod host sees the relay's own address.
      expect(splitAddress(mapped[0]?.observed).ip).toBe(relay.ip);

      await session.unmap();
      const after = await tcpProbe(relay, [target], { timeoutMs: 1_500 });
      expect(after[0]?.ok).toBe(false);
      await session.stop();
      await server.stop();
    },
  );

  test('a router with UPnP off and NAT-PMP on: NAT-PMP maps, UPnP finds no gateway', async () => {
    const host = lab.host('p');
    const router = lab.router('p');
    const server = await startTcpServer(host, 7400);
    await expect(
      startPortMapper(host, { protocol: 'upnp', port: 7400, timeoutMs: 3_000 }),
    ).rejects.toMatchObject({
      name: 'LabError',
    });
    const session = await startPortMapper(host, { protocol: 'pmp', port: 7400 });
    expect(session.mapping.externalHost).toBe(router.publicIp);
    const mapped = await tcpProbe(lab.relay(1), [`${router.publicIp}:7400`]);
    expect(mapped[0]?.ok).toBe(true);
    // Stopping the mapper removes its mapping.
    await session.stop();
    const after = await tcpProbe(lab.relay(1), [`${router.publicIp}:7400`], { timeoutMs: 1_500 });
    expect(after[0]?.ok).toBe(false);
    await server.stop();
  });
});

describeLab('NAT lab: teardown', () => {
  test('stop() leaves no namespace, no process and no run directory behind', async () => {
    const lab = await createLab({ relays: 1, sites: [{ name: 'u', nat: 'upnp' }] });
    const host = lab.host('u');
    // Something the lab did not start directly: a child of a spawned shell.
    const shell = host.spawn('sh', ['-c', 'sleep 300 & sleep 300 & wait']);
    await startTcpServer(lab.relay(0), 7500);
    const deadline = Date.now() + 5_000;
    let pids = await lab.pids();
    while (pids.length < 6 && Date.now() < deadline) {
      pids = await lab.pids();
    }
    // stun-server, miniupnpd, sh, 2 × sleep, tcp-server.
    expect(pids.length).toBeGreaterThanOrEqual(6);
    expect(shell.pid).toBeDefined();
    const dir = runDir(lab.runId);
    expect(existsSync(dir)).toBe(true);

    await lab.stop();

    const left = (await listLabNamespaces()).filter((ns) => ns.includes(lab.runId));
    expect(left).toEqual([]);
    expect(pids.filter((pid) => !isGone(pid))).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    await lab.stop(); // idempotent
  });

  test('createLab() cleans the leftovers of a crashed run and leaves live runs alone', async () => {
    // A pid that is certainly dead: a process that has exited.
    const dead = spawnSync('true').pid;
    const staleNs = `ptlab-${dead}-dead-inet`;
    const live = await createLab({ relays: 1 });
    try {
      expect(spawnSync('ip', ['netns', 'add', staleNs]).status).toBe(0);
      const sleeper = spawn('ip', ['netns', 'exec', staleNs, 'sleep', '300'], { stdio: 'ignore' });
      const sleeperPid = sleeper.pid ?? -1;
      const waitUntil = Date.now() + 5_000;
      while (!(await run('ip', ['netns', 'pids', staleNs])).stdout.trim() && Date.now() < waitUntil) {}

      const lab = await createLab({ relays: 1 });
      await lab.stop();

      const names = await listLabNamespaces();
      expect(names).not.toContain(staleNs);
      expect(names.filter((ns) => ns.includes(live.runId)).length).toBe(live.namespaces.length);
      expect(await waitForExit(sleeper, 5_000)).toBe(true);
      expect(isGone(sleeperPid)).toBe(true);
    } finally {
      spawnSync('ip', ['netns', 'delete', staleNs]);
      await live.stop();
    }
  });
});
