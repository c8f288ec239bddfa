/**
 * Statuses and events as a user reads them: each thing that goes wrong (a missing swarm-key
 * Secret, pods created before the tunnel, a deleted tunnel, a deleted network) shows in the Ready
 * condition and in an event with a reason and a message that says what to do; a restarted
 * operator that finds everything right writes nothing (resourceVersions unchanged, no events).
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import {
  eventsOf,
  eventually,
  freePort,
  getJson,
  installOperatorPrerequisites,
  type ObjWithStatus,
  type OperatorProcess,
  operatorUsers,
  readyOf,
  startOperator,
  waitForReason,
} from './operator-harness.js';

const NS = 'status-test';
const KEY = testSwarmKey();

const network = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: NS },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
  },
};
const tunnel = (name: string, app: string, localPort: number) => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name, namespace: NS },
  spec: {
    networkRef: { name: 'mesh' },
    selector: { matchLabels: { app } },
    forward: [{ name: 'orders-db', localPort }],
  },
});
const pod = (name: string, app: string): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: NS, labels: { app } },
  spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
});

async function create(cp: ControlPlane, obj: object): Promise<void> {
  await cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(obj) });
}

async function secret(cp: ControlPlane): Promise<void> {
  await cp.kubectlOk([
    '-n',
    NS,
    'create',
    'secret',
    'generic',
    'mesh-key',
    `--from-literal=swarm.key=${KEY}`,
  ]);
}

async function expectEvent(
  cp: ControlPlane,
  kind: string,
  name: string,
  reason: string,
  noteContains: string,
) {
  const ev = await eventually(`${reason} event on ${kind} ${name}`, async () =>
    (await eventsOf(cp, NS, kind, name)).find((e) => e.reason === reason),
  );
  expect(ev.note).toContain(noteContains);
  return ev;
}

describeWithControlPlane(
  'operator statuses and events',
  (env) => {
    let op: OperatorProcess;
    let port = 0;

    beforeAll(async () => {
      await installOperatorPrerequisites(env.cp);
      port = await freePort();
      op = await startOperator(env.cp, { identity: 'op-status-1', webhookPort: port });
      await env.cp.kubectlOk(['create', 'namespace', NS]);
    }, 120_000);

    afterAll(async () => {
      await op?.stop();
    });

    it('a network without its swarm-key Secret says so, and how to create it', async () => {
      await create(env.cp, network);
      const n = await waitForReason(env.cp, 'peernetwork/mesh', NS, 'SwarmKeySecretMissing');
      expect(n.status?.observedGeneration).toBe(n.metadata.generation);
      expect(readyOf(n)?.status).toBe('False');
      expect(readyOf(n)?.message).toContain(
        `kubectl -n ${NS} create secret generic mesh-key --from-file=swarm.key=swarm.key`,
      );
      await expectEvent(
        env.cp,
        'PeerNetwork',
        'mesh',
        'SwarmKeySecretMissing',
        'create secret generic mesh-key',
      );
      await secret(env.cp);
      const ready = await waitForReason(env.cp, 'peernetwork/mesh', NS, 'Ready');
      expect(readyOf(ready)?.status).toBe('True');
    });

    it('names the pods created before the tunnel (no sidecar), then counts injected pods', async () => {
      await create(env.cp, pod('orders-early', 'orders'));
      await create(env.cp, tunnel('orders', 'orders', 15432));
      await create(env.cp, tunnel('reports', 'reports', 15433));
      const t = await waitForReason(env.cp, 'peertunnel/orders', NS, 'PodsMissingSidecar');
      expect(t.status?.pods).toEqual({
        selected: 1,
        injected: 0,
        ready: 0,
        missingSidecar: ['orders-early'],
      });
      expect(readyOf(t)?.message).toContain('orders-early');
      await expectEvent(env.cp, 'PeerTunnel', 'orders', 'PodsMissingSidecar', 'delete them');
      await waitForReason(env.cp, 'peertunnel/reports', NS, 'NoPodsSelected');

      await env.cp.kubectlOk(['-n', NS, 'delete', 'pod', 'orders-early', '--wait=false']);
      await create(env.cp, pod('orders-1', 'orders'));
      const t2 = await waitForReason(env.cp, 'peertunnel/orders', NS, 'SidecarsNotReady');
      expect(t2.status?.pods).toEqual({ selected: 1, injected: 1, ready: 0 });
      expect(t2.status?.summary).toEqual({ pods: '0/1', providers: '0', path: 'none', refused: '-' });
      const printed = await env.cp.kubectlOk(['-n', NS, 'get', 'peertunnels']);
      expect(printed).toMatch(/orders\s+False\s+0\/1\s+0\s+none/);
    });

    it('a restarted operator changes nothing that was already right', async () => {
      // Let the statuses settle (sidecar status is polled every second).
      await sleep(2_000);
      const rv = async () => {
        const out: Record<string, string> = {};
        for (const r of ['peertunnel/orders', 'peertunnel/reports', 'peernetwork/mesh']) {
          out[r] = (await getJson<ObjWithStatus>(env.cp, ['-n', NS, 'get', r])).metadata.resourceVersion;
        }
        return out;
      };
      const before = await rv();
      const events = (await getJson<{ items: unknown[] }>(env.cp, ['-n', NS, 'get', 'events.events.k8s.io']))
        .items.length;
      await op.stop();
      op = await startOperator(env.cp, { identity: 'op-status-2', webhookPort: port });
      await eventually('the new operator to reconcile everything', async () => {
        const t = await op.metric('peertunnel_operator_reconciles_total', {
          kind: 'PeerTunnel',
          result: 'success',
        });
        const n = await op.metric('peertunnel_operator_reconciles_total', {
          kind: 'PeerNetwork',
          result: 'success',
        });
        return t >= 4 && n >= 1 ? true : undefined;
      });
      expect(await op.metric('peertunnel_operator_status_writes_total')).toBe(0);
      expect(await rv()).toEqual(before);
      expect(
        (await getJson<{ items: unknown[] }>(env.cp, ['-n', NS, 'get', 'events.events.k8s.io'])).items,
      ).toHaveLength(events);
    });

    it('deleting the swarm-key Secret fails the network and its tunnels, with what to do', async () => {
      await env.cp.kubectlOk(['-n', NS, 'delete', 'secret', 'mesh-key']);
      await waitForReason(env.cp, 'peernetwork/mesh', NS, 'SwarmKeySecretMissing');
      const t = await waitForReason(env.cp, 'peertunnel/orders', NS, 'SwarmKeySecretMissing');
      expect(readyOf(t)?.message).toContain('sidecars cannot start');
      await expectEvent(
        env.cp,
        'PeerTunnel',
        'orders',
        'SwarmKeySecretMissing',
        `kubectl -n ${NS} create secret generic mesh-key`,
      );
      await secret(env.cp);
      await waitForReason(env.cp, 'peertunnel/orders', NS, 'SidecarsNotReady');
      await waitForReason(env.cp, 'peernetwork/mesh', NS, 'Ready');
    });

    it('deleting a tunnel tells the pods still running its sidecar, and the network counts one tunnel less', async () => {
      await env.cp.kubectlOk(['-n', NS, 'delete', 'peertunnel', 'orders']);
      await expectEvent(env.cp, 'Pod', 'orders-1', 'TunnelDeleted', 'delete the pod');
      await eventually('network message', async () => {
        const n = await getJson<ObjWithStatus>(env.cp, ['-n', NS, 'get', 'peernetwork', 'mesh']);
        return readyOf(n)?.message.includes('1 PeerTunnel uses this network') ? true : undefined;
      });
    });

    it('deleting the network fails the tunnels that join it', async () => {
      await env.cp.kubectlOk(['-n', NS, 'delete', 'peernetwork', 'mesh']);
      const t = await waitForReason(env.cp, 'peertunnel/reports', NS, 'NetworkNotFound');
      expect(readyOf(t)?.message).toContain('PeerNetwork mesh does not exist');
      await expectEvent(env.cp, 'PeerTunnel', 'reports', 'NetworkNotFound', 'fix spec.networkRef.name');
      const printed = await env.cp.kubectlOk(['-n', NS, 'get', 'peertunnels', '-o', 'wide']);
      expect(printed).toMatch(/reports\s+False\s+NetworkNotFound\s+mesh/);
    });
  },
  { users: operatorUsers },
);
