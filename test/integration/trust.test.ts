/**
 * Who may serve and who may reach, with real node processes on 127.0.0.1: a member that holds the
 * swarm key and announces and handles `redis` without a credential naming it gets none of the
 * forwarder's connections; an expose allowed from namespace `shop` of cluster A serves that
 * workload and refuses one of another namespace and one of an untrusted cluster.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { TrustStatus } from '../../contracts/trust.js';
import {
  type Cluster,
  freePort,
  keyEnv,
  loopbackBase,
  type Member,
  makeCluster,
  newMember,
  trustOf,
  type Workload,
  writeCredential,
} from '../helpers/credentials.js';
import { refused } from '../helpers/held-connection.js';
import { eventually, type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';

const env = keyEnv;
const base = loopbackBase;
const HOUR = 3600;

describe('trust between node processes', () => {
  let dir: string;
  const a: Cluster = makeCluster('a');
  const b: Cluster = makeCluster('b');
  const nodes: Record<string, NodeProcess> = {};
  const servers: Record<string, TestServer> = {};
  const ports = { redis: 0, db: 0, dbOther: 0, dbB: 0 };
  const members: Record<string, Member> = {};

  async function start(name: string, m: Member, w: Workload, config: Record<string, unknown>) {
    await writeCredential(m, w, HOUR);
    nodes[name] = await startNodeProcess(
      { ...base, bootstrap: nodes.relay?.addresses ?? [], ...trustOf(m, [a]), ...config },
      { env },
    );
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-trust-'));
    for (const name of ['legit', 'impostor', 'client', 'other', 'outsider'])
      members[name] = await newMember(dir);
    servers.legit = await echoServer();
    servers.impostor = await echoServer();
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    nodes.relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const m = members as Record<string, Member>;
    await start(
      'legit',
      m.legit as Member,
      { cluster: a, namespace: 'shop', expose: ['redis', 'db'] },
      {
        expose: [
          { name: 'redis', port: servers.legit.port },
          { name: 'db', port: servers.legit.port, allowFrom: [{ cluster: 'a', namespace: 'shop' }] },
        ],
      },
    );
    // A member with a credential of cluster A that names only `web`, serving `redis` anyway.
    await start(
      'impostor',
      m.impostor as Member,
      { cluster: a, namespace: 'shop', expose: ['web'] },
      {
        expose: [{ name: 'redis', port: servers.impostor.port }],
      },
    );
    await start(
      'client',
      m.client as Member,
      { cluster: a, namespace: 'shop' },
      {
        forward: [
          { name: 'redis', localPort: ports.redis },
          { name: 'db', localPort: ports.db },
        ],
      },
    );
    await start(
      'other',
      m.other as Member,
      { cluster: a, namespace: 'billing' },
      {
        forward: [{ name: 'db', localPort: ports.dbOther }],
      },
    );
    // Trusts A (so it uses the legit exposer) but holds a credential of cluster B.
    await start(
      'outsider',
      m.outsider as Member,
      { cluster: b, namespace: 'shop' },
      {
        forward: [{ name: 'db', localPort: ports.dbB }],
      },
    );
  }, 120_000);

  afterAll(async () => {
    await Promise.allSettled(Object.values(nodes).map((n) => n.stop()));
    await Promise.allSettled(Object.values(servers).map((s) => s.close()));
    await rm(dir, { recursive: true, force: true });
  });

  it('gives a member without a credential for redis none of 100 new connections', async () => {
    const client = nodes.client as NodeProcess;
    const impostor = nodes.impostor as NodeProcess;
    // Both announce and handle redis: the forwarder must have found both before the traffic.
    const impostorLog = () =>
      client.logs.find((l) => l.event === 'provider_refused' && l.peer === impostor.peerId);
    await eventually(
      async () => {
        const providers = (await client.status()).forwards.find((f) => f.name === 'redis')?.providers ?? [];
        const peers = providers.map((p) => p.peer);
        return peers.includes(nodes.legit?.peerId ?? '') && (peers.includes(impostor.peerId) || impostorLog())
          ? true
          : undefined;
      },
      30_000,
      'both providers of redis found',
    );
    let intact = 0;
    for (let i = 0; i < 100; i++) if (await echoRoundTrip(ports.redis, 4096)) intact++;
    expect(intact).toBe(100);
    expect(servers.impostor?.connections).toBe(0);
    expect(servers.legit?.connections).toBe(100);
    expect(await impostor.metric('peertunnel_streams_opened_total', { service: 'redis' })).toBe(0);
    expect(
      await client.metric('peertunnel_trust_refused_total', { side: 'forward', reason: 'not_named' }),
    ).toBe(1);
    expect(impostorLog()).toMatchObject({ service: 'redis', reason: 'not_named', cluster: 'a' });
    const providers = (await client.status()).forwards.find((f) => f.name === 'redis')?.providers ?? [];
    expect(providers.map((p) => p.peer)).toEqual([nodes.legit?.peerId]);
  }, 120_000);

  it('serves allowFrom namespace shop of cluster A and refuses another namespace and an untrusted cluster', async () => {
    const legit = nodes.legit as NodeProcess;
    expect(await echoRoundTrip(ports.db, 65_536)).toBe(true);
    for (const port of [ports.dbOther, ports.dbB]) expect(await refused(port)).toBe(true);
    expect(servers.legit?.connections).toBe(101);
    expect(
      await legit.metric('peertunnel_trust_refused_total', { side: 'expose', reason: 'not_allowed' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await legit.metric('peertunnel_trust_refused_total', { side: 'expose', reason: 'untrusted_cluster' }),
    ).toBeGreaterThanOrEqual(1);
    const other = nodes.other?.peerId;
    const outsider = nodes.outsider?.peerId;
    const logged = (peer: string | undefined, reason: string) =>
      legit.logs.some(
        (l) =>
          l.event === 'stream_unauthorized' && l.peer === peer && l.service === 'db' && l.reason === reason,
      );
    expect(logged(other, 'not_allowed')).toBe(true);
    expect(logged(outsider, 'untrusted_cluster')).toBe(true);
    const trust = (await legit.status()).trust as TrustStatus;
    expect(trust.mode).toBe('credentialed');
    expect(trust.refusals).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          side: 'expose',
          peer: other,
          service: 'db',
          reason: 'not_allowed',
          namespace: 'billing',
        }),
        expect.objectContaining({
          side: 'expose',
          peer: outsider,
          service: 'db',
          reason: 'untrusted_cluster',
          cluster: 'b',
        }),
      ]),
    );
    // The refused forwarders say so too: the exposer would not let them reach db.
    expect(
      await (nodes.other as NodeProcess).metric('peertunnel_streams_failed_total', {
        service: 'db',
        reason: 'unauthorized',
      }),
    ).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
