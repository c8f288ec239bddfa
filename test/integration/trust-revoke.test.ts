/**
 * Revocation with real node processes: a cluster removed from an exposer's trust file loses new
 * connections within seconds and its open ones at once; a workload whose credential is not
 * renewed loses its open connections when the credential expires, within one lifetime.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  type Cluster,
  freePort,
  keyEnv,
  loopbackBase,
  type Member,
  makeCluster,
  newMember,
  renewEvery,
  trustOf,
  writeAtomically,
  writeCredential,
} from '../helpers/credentials.js';
import { held, refused } from '../helpers/held-connection.js';
import { eventually, type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';

const env = keyEnv;
const base = loopbackBase;
const LIFETIME_S = 8;
/** The exposer looks at open streams every second and at its files every second. */
const SLACK_MS = 3_000;

describe('revocation between node processes', () => {
  let dir: string;
  let trustFile: string;
  const a: Cluster = makeCluster('a');
  const b: Cluster = makeCluster('b');
  let relay: NodeProcess;
  let exposer: NodeProcess;
  let client: NodeProcess;
  let echo: TestServer;
  let clientMember: Member;
  let port = 0;
  let renewer: ReturnType<typeof renewEvery> | undefined;
  const bTrusted = () => ({ clusters: [{ name: 'b', publicKey: b.publicKey }] });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-revoke-'));
    trustFile = join(dir, 'trust.json');
    await writeAtomically(trustFile, JSON.stringify(bTrusted()));
    echo = await echoServer();
    port = await freePort();
    relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const e = await newMember(dir);
    await writeCredential(e, { cluster: a, namespace: 'shop', expose: ['echo'] }, 3600);
    exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        ...trustOf(e, [a], { file: trustFile }),
        expose: [{ name: 'echo', port: echo.port }],
      },
      { env },
    );
    clientMember = await newMember(dir);
    const workload = { cluster: b, namespace: 'shop' };
    await writeCredential(clientMember, workload, LIFETIME_S);
    renewer = renewEvery(clientMember, workload, LIFETIME_S, 2_000);
    client = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        ...trustOf(clientMember, [a]),
        forward: [{ name: 'echo', localPort: port }],
      },
      { env },
    );
    await eventually(async () => ((await echoRoundTrip(port, 1024)) ? true : undefined), 30_000, 'a tunnel');
  }, 120_000);

  afterAll(async () => {
    renewer?.stop();
    await Promise.allSettled([client?.stop(), exposer?.stop(), relay?.stop()]);
    await echo?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses new connections of a removed cluster within seconds and ends its open ones', async () => {
    const open = await held(port);
    expect(await open.ping('before')).toBe(true);
    await writeAtomically(trustFile, JSON.stringify({ clusters: [] }));
    await exposer.waitFor((l) => l.event === 'trust_reloaded', 10_000);
    await eventually(
      async () => ((await refused(port)) ? true : undefined),
      10_000,
      'new connections refused',
    );
    await Promise.race([
      open.closed,
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error('open connection outlived a lifetime')),
          LIFETIME_S * 1000 + SLACK_MS,
        ),
      ),
    ]);
    expect(
      await exposer.metric('peertunnel_trust_refused_total', { side: 'expose', reason: 'untrusted_cluster' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      await exposer.metric('peertunnel_trust_revoked_total', { side: 'expose', reason: 'untrusted_cluster' }),
    ).toBe(1);
    expect(exposer.logs.find((l) => l.event === 'tunnel_revoked')).toMatchObject({
      peer: client.peerId,
      service: 'echo',
      reason: 'untrusted_cluster',
    });
  }, 60_000);

  it('serves the cluster again once trusted again, and ends a connection whose credential is not renewed', async () => {
    await writeAtomically(trustFile, JSON.stringify(bTrusted()));
    await eventually(
      async () => ((await echoRoundTrip(port, 1024)) ? true : undefined),
      10_000,
      'trusted again',
    );
    // The last credential: no renewal after it.
    renewer?.stop();
    await writeCredential(clientMember, { cluster: b, namespace: 'shop' }, LIFETIME_S);
    await exposer.waitFor((l) => l.event === 'trust_reloaded', 1_000);
    const before = await exposer.metric('peertunnel_trust_revoked_total', {
      side: 'expose',
      reason: 'expired',
    });
    await new Promise((r) => setTimeout(r, 2_500)); // the node has read and sent it
    const open = await held(port);
    expect(await open.ping('still trusted')).toBe(true);
    await Promise.race([
      open.closed,
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error('open connection outlived its credential')),
          LIFETIME_S * 1000 + SLACK_MS,
        ),
      ),
    ]);
    expect(
      await exposer.metric('peertunnel_trust_revoked_total', { side: 'expose', reason: 'expired' }),
    ).toBe(before + 1);
    expect(await refused(port)).toBe(true);
  }, 60_000);
});
