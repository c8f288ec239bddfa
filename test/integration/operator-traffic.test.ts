/**
 * End to end through the API server: two pods (one exposing, one forwarding) get their sidecars
 * from the webhook; the pod runner runs those sidecars as a kubelet would (env and swarm key from
 * the pod and its Secret); traffic flows through the tunnel; and the PeerTunnel statuses on the
 * API server show Ready, the pod counts, the providers and the path, gathered from the sidecars'
 * /status.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { ControlPlane } from '../env/control-plane.js';
import { type RunningSidecar, runPodSidecar } from '../env/pod-runner.js';
import { describeWithControlPlane } from '../env/skip.js';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';
import {
  eventually,
  freePort,
  installOperatorPrerequisites,
  type OperatorProcess,
  operatorUsers,
  readyOf,
  startOperator,
  waitForReason,
} from './operator-harness.js';

const NS = 'traffic';
const KEY = testSwarmKey();
const KEY_ENV = 'PEERTUNNEL_TEST_RELAY_KEY';

async function create(cp: ControlPlane, obj: object): Promise<void> {
  await cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(obj) });
}

const pod = (name: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, labels: { app } },
  spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
});

describeWithControlPlane(
  'operator end to end: injected sidecars carry traffic, status tells',
  (env) => {
    let op: OperatorProcess;
    let relay: NodeProcess;
    let echo: TestServer;
    let localPort = 0;
    const sidecars: RunningSidecar[] = [];

    beforeAll(async () => {
      const { cp } = env;
      await installOperatorPrerequisites(cp);
      op = await startOperator(cp, {
        identity: 'op-traffic',
        webhookPort: await freePort(),
        extraArgs: ['--trust-admin-address-annotation'],
      });
      // A bootstrap/relay node somewhere reachable (here: this host).
      relay = await startNodeProcess(
        { role: 'relay', swarmKey: { env: KEY_ENV }, listen: ['/ip4/127.0.0.1/tcp/0'] },
        { env: { [KEY_ENV]: KEY } },
      );
      echo = await echoServer();
      localPort = await freePort();
      await cp.kubectlOk(['create', 'namespace', NS]);
      await cp.kubectlOk([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'mesh-key',
        `--from-literal=swarm.key=${KEY}`,
      ]);
      await cp.apply([
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerNetwork',
          metadata: { name: 'mesh', namespace: NS },
          spec: {
            swarmKeySecretRef: { name: 'mesh-key' },
            bootstrap: relay.addresses.filter((a) => a.startsWith('/ip4/127.0.0.1/')),
          },
        },
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'db', namespace: NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'db' } },
            expose: [{ name: 'echo', port: echo.port }],
          },
        },
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'client', namespace: NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'client' } },
            forward: [{ name: 'echo', localPort }],
          },
        },
      ]);
      await waitForReason(cp, 'peertunnel/client', NS, 'NoPodsSelected');
    }, 120_000);

    afterAll(async () => {
      await Promise.all(sidecars.map((s) => s.stop()));
      await relay?.stop();
      await echo?.close();
      await op?.stop();
    });

    it('runs the injected sidecars of an exposing and a forwarding pod, and traffic flows', async () => {
      await create(env.cp, pod('db-0', 'db'));
      await create(env.cp, pod('client-0', 'client'));
      await waitForReason(env.cp, 'peertunnel/client', NS, 'SidecarsNotReady');
      sidecars.push(await runPodSidecar(env.cp, NS, 'db-0'));
      sidecars.push(await runPodSidecar(env.cp, NS, 'client-0'));
      await eventually(
        'an echo through the tunnel',
        async () => ((await echoRoundTrip(localPort, 64 * 1024)) ? true : undefined),
        60_000,
      );
    });

    it('shows Ready, the pod counts, the providers and the path on the API server', async () => {
      const client = await waitForReason(env.cp, 'peertunnel/client', NS, 'Ready', 60_000);
      expect(readyOf(client)?.status).toBe('True');
      expect(client.status?.pods).toEqual({ selected: 1, injected: 1, ready: 1 });
      expect(client.status?.forwards).toEqual([{ name: 'echo', providers: 1, path: 'direct' }]);
      expect(client.status?.summary).toEqual({ pods: '1/1', providers: '1', path: 'direct', refused: '-' });
      const db = await waitForReason(env.cp, 'peertunnel/db', NS, 'Ready');
      expect(db.status?.exposes).toEqual([{ name: 'echo', ready: 1 }]);
      expect(db.status?.summary).toEqual({ pods: '1/1', providers: '-', path: '-', refused: '-' });
      const printed = await env.cp.kubectlOk(['-n', NS, 'get', 'peertunnels']);
      expect(printed).toMatch(/client\s+True\s+1\/1\s+1\s+direct/);
    });

    it('reports a stopped sidecar as not ready', async () => {
      const db = sidecars.shift();
      await db?.stop();
      const t = await waitForReason(env.cp, 'peertunnel/db', NS, 'SidecarsNotReady');
      expect(t.status?.pods).toEqual({ selected: 1, injected: 1, ready: 0 });
      expect(readyOf(t)?.message).toContain('db-0');
    });

    it('stops counting the dead exposer as a provider once the forwarder fails to reach it', async () => {
      // The forwarder's /status still lists the exposer (its DHT record outlives it) until a
      // connection through the tunnel fails on it; from then on the status counts it no more.
      const client = await eventually(
        'the client tunnel to lose its provider',
        async () => {
          await Promise.race([
            echoRoundTrip(localPort, 1024).catch(() => false),
            sleep(10_000, undefined, { ref: false }),
          ]);
          return waitForReason(env.cp, 'peertunnel/client', NS, 'NoProviders', 2_000);
        },
        60_000,
      );
      expect(client.status?.forwards).toEqual([{ name: 'echo', providers: 0, path: 'none' }]);
      expect(client.status?.summary).toEqual({ pods: '1/1', providers: '0', path: 'none', refused: '-' });
      expect(readyOf(client)?.message).toContain('"echo"');
    });
  },
  { users: operatorUsers },
);
