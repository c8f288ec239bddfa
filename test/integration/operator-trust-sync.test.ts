/**
 * Trusted clusters kept live by the operator, through a real API server: the exposer is an
 * injected sidecar of cluster "a" (a real node process run from its pod spec, credential from the
 * operator) whose PeerNetwork also trusts cluster "b"; a forwarder of cluster "b" (a node process
 * with a credential signed by b's key, valid for an hour) reaches it. Removing "b" from the
 * PeerNetwork refuses b's new connections within seconds and ends its open one within one
 * credential lifetime of the network, with no pod restarted; with the operator gone the exposer
 * keeps its last list.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { ControlPlane } from '../env/control-plane.js';
import { type RunningSidecar, runPodSidecar } from '../env/pod-runner.js';
import { describeWithControlPlane } from '../env/skip.js';
import { type Cluster, makeCluster, newMember, writeCredential } from '../helpers/credentials.js';
import { deadline, held, refused } from '../helpers/held-connection.js';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';
import { createPod, credentialedNamespace } from './credential-harness.js';
import {
  eventually,
  freePort,
  getJson,
  installOperatorPrerequisites,
  type OperatorProcess,
  operatorUsers,
  startOperator,
} from './operator-harness.js';

const KEY = testSwarmKey();
const KEY_ENV = 'PEERTUNNEL_TEST_TRUST_SYNC_KEY';
/** The network's credential lifetime: open connections of a removed cluster end within it. */
const TTL = 10;
/** A new connection of a removed cluster is refused within this: a poll (5 s ±20%) and a check. */
const REFUSED_WITHIN_MS = 12_000;

describeWithControlPlane(
  'operator: trusted clusters kept live from the PeerNetwork',
  (env) => {
    let op: OperatorProcess;
    let relay: NodeProcess;
    let echo: TestServer;
    let exposer: RunningSidecar;
    let forwarder: NodeProcess;
    let dir: string;
    let port = 0;
    const b: Cluster = makeCluster('b');
    const untrusted = () =>
      exposer.node.metric('peertunnel_trust_refused_total', { side: 'expose', reason: 'untrusted_cluster' });

    beforeAll(async () => {
      const cp: ControlPlane = env.cp;
      dir = await mkdtemp(join(tmpdir(), 'pt-trust-sync-'));
      await installOperatorPrerequisites(cp);
      op = await startOperator(cp, {
        identity: 'op-trust-sync',
        webhookPort: await freePort(),
        extraArgs: ['--trust-admin-address-annotation', '--cluster-name=a'],
      });
      relay = await startNodeProcess(
        { role: 'relay', swarmKey: { env: KEY_ENV }, listen: ['/ip4/127.0.0.1/tcp/0'] },
        { env: { [KEY_ENV]: KEY } },
      );
      const bootstrap = relay.addresses.filter((a) => a.startsWith('/ip4/127.0.0.1/'));
      echo = await echoServer();
      port = await freePort();
      await credentialedNamespace(cp, 'shop', {
        key: KEY,
        bootstrap,
        serviceAccounts: ['db'],
        ttlSeconds: TTL,
      });
      await cp.kubectlOk([
        '-n',
        'shop',
        'patch',
        'peernetwork',
        'mesh',
        '--type=merge',
        '-p',
        JSON.stringify({ spec: { trust: { clusters: [{ name: 'b', publicKey: b.publicKey }] } } }),
      ]);
      await cp.apply({
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerTunnel',
        metadata: { name: 'db', namespace: 'shop' },
        spec: {
          networkRef: { name: 'mesh' },
          selector: { matchLabels: { app: 'db' } },
          expose: [{ name: 'echo', port: echo.port }],
        },
      });
      const a = await eventually('status.trust on the network', async () => {
        const n = await getJson<{ status?: { trust?: { cluster: string; publicKey: string } } }>(cp, [
          '-n',
          'shop',
          'get',
          'peernetwork',
          'mesh',
        ]);
        return n.status?.trust;
      });
      await createPod(cp, 'shop', 'db-0', 'db', 'db');
      exposer = await runPodSidecar(cp, 'shop', 'db-0');
      await exposer.node.waitFor((l) => l.event === 'credential_fetched', 30_000);

      const m = await newMember(dir);
      // Valid for an hour: its open connection can only end by the removal of its cluster.
      await writeCredential(m, { cluster: b, namespace: 'shop' }, 3600);
      forwarder = await startNodeProcess(
        {
          swarmKey: { env: KEY_ENV },
          listen: ['/ip4/127.0.0.1/tcp/0'],
          bootstrap,
          identity: { file: m.identity },
          trust: {
            network: 'mesh',
            credential: { file: m.credential },
            clusters: [{ name: a.cluster, publicKey: a.publicKey }],
          },
          forward: [{ name: 'echo', localPort: port }],
        },
        { env: { [KEY_ENV]: KEY } },
      );
      await eventually(
        "an echo from cluster b's forwarder",
        async () => ((await echoRoundTrip(port, 1024).catch(() => false)) ? true : undefined),
        60_000,
      );
    }, 180_000);

    afterAll(async () => {
      await Promise.allSettled([forwarder?.stop(), exposer?.stop(), relay?.stop()]);
      await echo?.close();
      await op?.stop();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    });

    it('refuses new connections of a cluster removed from the PeerNetwork within seconds, and ends its open one within a lifetime', async () => {
      const open = await held(port);
      expect(await open.ping('before')).toBe(true);
      const before = await untrusted();
      const removedAt = Date.now();
      await env.cp.kubectlOk([
        '-n',
        'shop',
        'patch',
        'peernetwork',
        'mesh',
        '--type=json',
        '-p',
        JSON.stringify([{ op: 'remove', path: '/spec/trust/clusters' }]),
      ]);
      await eventually(
        'new connections of cluster b refused',
        async () => ((await refused(port)) ? true : undefined),
        REFUSED_WITHIN_MS,
      );
      expect(Date.now() - removedAt).toBeLessThan(REFUSED_WITHIN_MS);
      // The same sidecar process took the operator's new list: no restart, no file.
      expect(exposer.node.logs.find((l) => l.event === 'trust_reloaded')).toMatchObject({
        source: 'issuer',
        clusters: ['a'],
      });
      await Promise.race([
        open.closed,
        deadline(removedAt + TTL * 1000 - Date.now(), 'open connection outlived a lifetime'),
      ]);

      expect(await untrusted()).toBeGreaterThan(before);
      expect(
        exposer.node.logs.find((l) => l.event === 'stream_unauthorized' && l.reason === 'untrusted_cluster'),
      ).toMatchObject({ peer: forwarder.peerId, service: 'echo', cluster: 'b', namespace: 'shop' });
      expect(
        await exposer.node.metric('peertunnel_trust_revoked_total', {
          side: 'expose',
          reason: 'untrusted_cluster',
        }),
      ).toBe(1);
      expect(exposer.node.logs.find((l) => l.event === 'tunnel_revoked')).toMatchObject({
        peer: forwarder.peerId,
        reason: 'untrusted_cluster',
      });
      expect(exposer.node.proc.exitCode).toBeNull();
    }, 60_000);

    it('keeps its last list while the operator cannot be asked, and says so', async () => {
      await op.stop();
      await exposer.node.waitFor(
        (l) => l.event === 'trust_sync_failed' && l.reason === 'unreachable',
        15_000,
      );
      expect(
        await exposer.node.metric('peertunnel_trust_sync_failures_total', { reason: 'unreachable' }),
      ).toBeGreaterThanOrEqual(1);
      const s = await exposer.node.status();
      expect(s.trust?.trustedClusters).toEqual(['a']);
      expect(await refused(port)).toBe(true);
    }, 30_000);
  },
  { users: operatorUsers },
);
