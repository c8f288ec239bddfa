/**
 * Hole punching, relay fallback and relay failover between real node processes in the NAT lab.
 *
 *   relay0, relay1 (203.0.113.10/.11): role relay (bootstrap, DHT server, circuit relay)
 *   site a (eim)        a/0: exposes sink, echo, source (servers on 127.0.0.1 inside a/0)
 *   site b (eim)        b/0: forwards them; b/1: a node with the wrong swarm key
 *   site s (symmetric)  s/0: forwards them
 *
 * Routers drop unsolicited inbound traffic, so a/0 and b/0 meet through a relay first, then
 * DCUtR with dials from the listening port opens a direct path; s/0 never can. Each test asserts
 * on bytes (hash-checked), /status and metrics. Needs root (skipped loudly, failing under CI=true).
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, expect, test } from '@jest/globals';
import { type LabNodeProcess, startLabNode } from '../helpers/lab-node.js';
import { eventually, type LogLine, testSwarmKey } from '../helpers/node-process.js';
import { createLab, describeLab, type Lab } from './index.js';
import {
  forwardsAgain,
  KEY_ENV,
  MiB,
  relayBootstrap,
  sidecarConfig,
  startRelays,
  startTrafficServers,
  stopScenario,
  traffic,
} from './scenario.js';

const PORTS = { sink: 7001, echo: 7002, source: 7003 } as const;
const LOCAL = { sink: 15001, echo: 15002, source: 15003 } as const;
/** 1 GiB unless the machine is too slow for it in the time given (LAB_BULK_MIB overrides). */
const BULK = Number(process.env.LAB_BULK_MIB ?? '1024') * MiB;

const timeOf = (l: LogLine): number => Date.parse(String(l.time));

describeLab('NAT lab: hole punching and relays', () => {
  let lab: Lab;
  const env = { [KEY_ENV]: testSwarmKey() };
  const relays: LabNodeProcess[] = [];
  let exposer: LabNodeProcess;
  let eimForwarder: LabNodeProcess;
  let symForwarder: LabNodeProcess;
  const servers: ChildProcess[] = [];

  const sidecar = (bootstrap: string[]) => sidecarConfig(lab, bootstrap);
  const forwards = [
    { name: 'sink', localPort: LOCAL.sink },
    { name: 'echo', localPort: LOCAL.echo },
    { name: 'source', localPort: LOCAL.source },
  ];
  const relayBytes = async (): Promise<number> => {
    let total = 0;
    for (const r of relays)
      if (r.proc.exitCode === null) total += await r.metric('peertunnel_relay_relayed_bytes_total');
    return total;
  };
  const peerEntry = async (node: LabNodeProcess, peer: string) =>
    (await node.status()).peers.filter((p) => p.peer === peer);

  beforeAll(async () => {
    lab = await createLab({
      relays: 2,
      sites: [
        { name: 'a', nat: 'eim' },
        { name: 'b', nat: 'eim', hosts: 2 },
        { name: 's', nat: 'symmetric' },
      ],
    });
    await startTrafficServers(lab.host('a'), PORTS, servers);
    await startRelays(lab, env, relays);
    const bootstrap = relayBootstrap(lab, relays);
    exposer = await startLabNode(
      lab.host('a'),
      {
        ...sidecar(bootstrap),
        expose: Object.entries(PORTS).map(([name, port]) => ({ name, port })),
      },
      { env },
    );
    // The exposer is reachable through relays once it holds its reservations and has announced.
    await eventually(
      async () =>
        (await exposer.status()).nat.relays.filter((r) => r.state === 'active').length === 2
          ? true
          : undefined,
      15_000,
      'exposer reservations on both relays',
    ).catch(async (err: unknown) => {
      throw new Error(
        `${String(err)}\nstatus: ${JSON.stringify((await exposer.status()).nat)}\nlogs: ${exposer.logs
          .slice(-20)
          .map((l) => JSON.stringify(l))
          .join('\n')}`,
      );
    });
    await eventually(
      async () => ((await exposer.status()).dht.announced ? true : undefined),
      15_000,
      'announce',
    );
  }, 90_000);

  afterAll(async () => {
    const named = { exposer, eimForwarder, symForwarder, relay0: relays[0], relay1: relays[1] };
    await stopScenario(lab, named, servers);
  }, 30_000);

  test('two endpoint-independent NATs: relayed first, hole-punched within 5 s, then 1 GiB direct and intact', async () => {
    const bootstrap = relayBootstrap(lab, relays);
    eimForwarder = await startLabNode(lab.host('b'), { ...sidecar(bootstrap), forward: forwards }, { env });
    // The first forwarded connection finds the exposer through the DHT and dials it via a relay.
    const first = await traffic(lab.host('b'), ['echo', String(LOCAL.echo), '4096']);
    expect(first).toMatchObject({ ok: true, bytes: 4096 });

    const pathLines = (node: LabNodeProcess, peer: string) =>
      node.logs.filter((l) => l.event === 'path_changed' && l.peer === peer);
    const punched = await eimForwarder
      .waitFor(
        (l) => l.event === 'path_changed' && l.peer === exposer.peerId && l.path === 'hole_punched',
        10_000,
      )
      .catch(async (err: unknown) => {
        process.stdout.write(
          `on failure: exposer nat ${JSON.stringify((await exposer.status()).nat)}\nforwarder nat ${JSON.stringify((await eimForwarder.status()).nat)}\n`,
        );
        throw err;
      });
    const relayed = pathLines(eimForwarder, exposer.peerId).find((l) => l.path === 'relayed');
    expect(relayed).toBeDefined();
    const toDirectMs = timeOf(punched) - timeOf(relayed as LogLine);
    process.stdout.write(`lab: relayed -> hole_punched in ${toDirectMs} ms\n`);
    expect(toDirectMs).toBeLessThan(5_000);
    // The exposer saw the same upgrade from its side.
    await exposer.waitFor(
      (l) => l.event === 'path_changed' && l.peer === eimForwarder.peerId && l.path === 'hole_punched',
      5_000,
    );

    // /status: the forward's provider and the open connection are hole-punched, not relayed.
    await eventually(
      async () => {
        const s = await eimForwarder.status();
        const provider = s.forwards.find((f) => f.name === 'sink')?.providers[0];
        return provider?.path === 'hole_punched' ? s : undefined;
      },
      5_000,
      'forward provider path hole_punched',
    ).catch(async (err: unknown) => {
      const st = await eimForwarder.status();
      process.stdout.write(
        `on failure: forwarder peers ${JSON.stringify(st.peers)}\nforwards ${JSON.stringify(st.forwards)}\n`,
      );
      throw err;
    });
    const direct = (await peerEntry(eimForwarder, exposer.peerId)).find((p) => p.path === 'hole_punched');
    expect(direct?.remoteAddr).toBe(`/ip4/${lab.router('a').publicIp}/tcp/4001/p2p/${exposer.peerId}`);
    expect(
      await eimForwarder.metric('peertunnel_connections', { path: 'hole_punched' }),
    ).toBeGreaterThanOrEqual(1);
    expect(await exposer.metric('peertunnel_connections', { path: 'hole_punched' })).toBeGreaterThanOrEqual(
      1,
    );
    const successes =
      (await eimForwarder.metric('peertunnel_holepunch_attempts_total', { result: 'success' })) +
      (await exposer.metric('peertunnel_holepunch_attempts_total', { result: 'success' }));
    expect(successes).toBeGreaterThanOrEqual(1);

    // TTFB over the direct path, for the report.
    const ttfb = await traffic(lab.host('b'), ['download', String(LOCAL.source), '1024']);
    expect(ttfb.ok).toBe(true);
    process.stdout.write(`lab: TTFB direct (warm) ${ttfb.ttfbMs?.toFixed(1)} ms\n`);

    // A forwarded connection opened now goes direct: the relays carry none of its bytes.
    const relayedBefore = await relayBytes();
    const up = await traffic(lab.host('b'), ['upload', String(LOCAL.sink), String(BULK)], 600_000);
    expect(up).toMatchObject({ ok: true, bytes: BULK });
    expect(up.answered).toBe(up.expected);
    const relayedAfter = await relayBytes();
    process.stdout.write(
      `lab: ${BULK / MiB} MiB direct in ${((up.ms ?? 0) / 1000).toFixed(1)} s ` +
        `(${((BULK / MiB / (up.ms ?? 1)) * 1000).toFixed(0)} MiB/s); relays carried ${relayedAfter - relayedBefore} bytes\n`,
    );
    expect(relayedAfter - relayedBefore).toBeLessThan(MiB);
    expect(
      await exposer.metric('peertunnel_stream_bytes_total', {
        service: 'sink',
        side: 'expose',
        direction: 'received',
      }),
    ).toBeGreaterThanOrEqual(BULK);
  }, 660_000);

  test('a symmetric NAT stays relayed, traffic intact, path relayed, punching stops at its bound', async () => {
    const bootstrap = relayBootstrap(lab, relays);
    symForwarder = await startLabNode(lab.host('s'), { ...sidecar(bootstrap), forward: forwards }, { env });
    // Both relays see s/0 from different ports: it knows its NAT maps per destination.
    await eventually(
      async () => ((await symForwarder.status()).nat.symmetricNat ? true : undefined),
      10_000,
      'symmetric NAT detected',
    );
    expect((await symForwarder.status()).nat.observedCandidates).toEqual([]);

    const relayedBefore = await relayBytes();
    const ttfb = await traffic(lab.host('s'), ['download', String(LOCAL.source), '1024']);
    expect(ttfb.ok).toBe(true);
    process.stdout.write(
      `lab: TTFB relayed (cold, includes lookup and relay dial) ${ttfb.ttfbMs?.toFixed(1)} ms\n`,
    );
    const warm = await traffic(lab.host('s'), ['download', String(LOCAL.source), '1024']);
    process.stdout.write(`lab: TTFB relayed (warm) ${warm.ttfbMs?.toFixed(1)} ms\n`);
    const size = 64 * MiB;
    const up = await traffic(lab.host('s'), ['upload', String(LOCAL.sink), String(size)], 120_000);
    expect(up).toMatchObject({ ok: true, bytes: size });
    const down = await traffic(lab.host('s'), ['download', String(LOCAL.source), String(size)], 120_000);
    expect(down).toMatchObject({ ok: true, bytes: size });
    process.stdout.write(
      `lab: relayed ${size / MiB} MiB up in ${((up.ms ?? 0) / 1000).toFixed(1)} s, down in ${((down.ms ?? 0) / 1000).toFixed(1)} s\n`,
    );
    // These bytes did go through a relay, and the relay's counter says so.
    expect((await relayBytes()) - relayedBefore).toBeGreaterThanOrEqual(2 * size);

    // Punching is tried, fails, and stops after 3 failed rounds (2 s, 4 s apart).
    const failures = async () =>
      (await exposer.metric('peertunnel_holepunch_attempts_total', { result: 'failure' })) +
      (await symForwarder.metric('peertunnel_holepunch_attempts_total', { result: 'failure' }));
    await eventually(async () => ((await failures()) >= 3 ? true : undefined), 30_000, '3 failed rounds');
    const atBound = await failures();
    await new Promise((r) => setTimeout(r, 8_000));
    expect(await failures()).toBe(atBound);
    expect(atBound).toBe(3);
    const s = await symForwarder.status();
    expect(s.peers.filter((p) => p.peer === exposer.peerId).map((p) => p.path)).toEqual(['relayed']);
    expect(s.forwards.find((f) => f.name === 'sink')?.providers[0]?.path).toBe('relayed');
    expect((await exposer.status()).nat.holePunchGaveUp).toContain(symForwarder.peerId);
    expect(await symForwarder.metric('peertunnel_connections', { path: 'relayed' })).toBeGreaterThanOrEqual(
      1,
    );
    expect(await symForwarder.metric('peertunnel_connections', { path: 'hole_punched' })).toBe(0);
  }, 240_000);

  test('the relay dies mid-session: direct streams carry on, the relayed site forwards again within 10 s', async () => {
    // Which relay carries s/0's only path to the exposer?
    const relayedConn = (await peerEntry(symForwarder, exposer.peerId)).find((p) => p.path === 'relayed');
    const viaRelay = /\/p2p\/([^/]+)\/p2p-circuit/.exec(relayedConn?.remoteAddr ?? '')?.[1];
    const victim = relays.findIndex((r) => r.peerId === viaRelay);
    expect(victim).toBeGreaterThanOrEqual(0);
    const survivor = relays[1 - victim];

    // A busy stream on the direct path, across the kill.
    const hold = traffic(lab.host('b'), ['hold', String(LOCAL.echo), '6000', '20'], 30_000);
    await new Promise((r) => setTimeout(r, 1_000));
    const killedAt = Date.now();
    await relays[victim]?.kill();

    // s/0 forwards again through the other relay: poll with real traffic.
    const recovered = await forwardsAgain(
      lab.host('s'),
      LOCAL.echo,
      15_000,
      'forward from the symmetric site after the relay died',
    );
    process.stdout.write(
      `lab: relayed site forwarding again ${recovered - killedAt} ms after the relay died\n`,
    );
    expect(recovered - killedAt).toBeLessThan(10_000);

    const held = await hold;
    expect(held).toMatchObject({ ok: true, error: null });
    expect(held.rounds).toBeGreaterThan(50);
    const s = await symForwarder.status();
    const path = s.peers.find((p) => p.peer === exposer.peerId);
    expect(path?.remoteAddr).toContain(`/p2p/${survivor?.peerId}/p2p-circuit`);
    // The exposer lost the dead relay's reservation and still holds the other one.
    await eventually(
      async () => {
        const relaysNow = (await exposer.status()).nat.relays;
        const active = relaysNow.filter((r) => r.state === 'active').map((r) => r.relay);
        return active.length === 1 && active[0] === survivor?.peerId ? relaysNow : undefined;
      },
      5_000,
      'exposer holds only the surviving relay',
    );
    expect(exposer.logs.some((l) => l.event === 'relay_reservation_lost' && l.relay === viaRelay)).toBe(true);
    expect(await exposer.metric('peertunnel_relay_reservations', { state: 'active' })).toBe(1);
    // The direct path was never touched.
    expect((await peerEntry(eimForwarder, exposer.peerId)).some((p) => p.path === 'hole_punched')).toBe(true);
    expect(await traffic(lab.host('b'), ['echo', String(LOCAL.echo), '65536'])).toMatchObject({ ok: true });
  }, 60_000);

  test('a node with the wrong swarm key cannot reserve on a relay or reach any site', async () => {
    const alive = relays.find((r) => r.proc.exitCode === null && r.proc.signalCode === null);
    const idx = relays.indexOf(alive as LabNodeProcess);
    const relayAddr = `/ip4/${lab.relay(idx).ip}/tcp/4001/p2p/${alive?.peerId}`;
    const servingBefore = await alive?.metric('peertunnel_relay_reservations', { state: 'serving' });
    const intruder = await startLabNode(
      lab.host('b', 1),
      {
        ...sidecar([relayAddr, `${relayAddr}/p2p-circuit/p2p/${exposer.peerId}`]),
        forward: [{ name: 'echo', localPort: LOCAL.echo }],
      },
      { env: { [KEY_ENV]: testSwarmKey() } },
    );
    try {
      await eventually(
        async () => {
          const r = (await intruder.status()).nat.relays[0];
          return r !== undefined && r.failures >= 2 ? r : undefined;
        },
        15_000,
        'intruder reservation failures',
      );
      const echo = await traffic(lab.host('b', 1), ['echo', String(LOCAL.echo), '1024'], 30_000);
      expect(echo.ok).toBe(false);
      const s = await intruder.status();
      expect(s.peers).toEqual([]);
      expect(s.nat.relays.every((r) => r.state !== 'active')).toBe(true);
      expect(await intruder.metric('peertunnel_relay_reservations', { state: 'active' })).toBe(0);
      expect(
        await intruder.metric('peertunnel_streams_failed_total', { service: 'echo', reason: 'no_provider' }),
      ).toBeGreaterThanOrEqual(1);
      expect(await alive?.metric('peertunnel_relay_reservations', { state: 'serving' })).toBe(servingBefore);
      expect((await alive?.status())?.peers.some((p) => p.peer === intruder.peerId)).toBe(false);
      expect((await exposer.status()).peers.some((p) => p.peer === intruder.peerId)).toBe(false);
    } finally {
      await intruder.stop();
    }
  }, 60_000);
});
