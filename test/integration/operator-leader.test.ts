/**
 * Two operator processes: one holds the Lease and runs the controllers, the other only serves
 * the webhook (both do, on one SO_REUSEPORT port, as two pods behind a Service would). The leader
 * is killed with SIGKILL (no release); the other takes the Lease over within 20 s, and pods keep
 * getting their sidecar meanwhile.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import {
  eventually,
  freePort,
  getJson,
  installOperatorPrerequisites,
  OPERATOR_NS,
  type OperatorProcess,
  operatorUsers,
  review,
  startOperator,
  waitForReason,
  webhookCa,
} from './operator-harness.js';

const NS = 'leader-test';

interface Lease {
  spec: { holderIdentity?: string; leaseTransitions?: number; renewTime?: string };
}

function pod(name: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS, labels: { app: 'orders' } },
    spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
  };
}

describeWithControlPlane(
  'operator leader election with two replicas',
  (env) => {
    const ops: Record<string, OperatorProcess> = {};
    let port = 0;

    beforeAll(async () => {
      const { cp } = env;
      await installOperatorPrerequisites(cp);
      port = await freePort();
      const [a, b] = await Promise.all([
        startOperator(cp, { identity: 'op-a', webhookPort: port }),
        startOperator(cp, { identity: 'op-b', webhookPort: port }),
      ]);
      ops['op-a'] = a;
      ops['op-b'] = b;
      await cp.kubectlOk(['create', 'namespace', NS]);
      await cp.kubectlOk([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'mesh-key',
        `--from-literal=swarm.key=${testSwarmKey()}`,
      ]);
      await cp.apply([
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerNetwork',
          metadata: { name: 'mesh', namespace: NS },
          spec: {
            swarmKeySecretRef: { name: 'mesh-key' },
            bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
          },
        },
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'orders', namespace: NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'orders' } },
            forward: [{ name: 'orders-db', localPort: 15432 }],
          },
        },
      ]);
      await waitForReason(cp, 'peertunnel/orders', NS, 'NoPodsSelected');
    }, 120_000);

    afterAll(async () => {
      await Promise.all(Object.values(ops).map((o) => o.stop()));
    });

    const holder = async () =>
      (await getJson<Lease>(env.cp, ['-n', OPERATOR_NS, 'get', 'lease', 'peertunnel-operator'])).spec
        .holderIdentity;

    let leader = '';
    let follower = '';

    it('one replica holds the Lease and reconciles; the other does not', async () => {
      leader = await eventually('a Lease holder', async () => (await holder()) || undefined);
      follower = leader === 'op-a' ? 'op-b' : 'op-a';
      const l = ops[leader];
      const f = ops[follower];
      if (l === undefined || f === undefined) throw new Error(`unknown holder ${leader}`);
      expect(await l.metric('peertunnel_operator_leader')).toBe(1);
      expect(await f.metric('peertunnel_operator_leader')).toBe(0);
      expect(await l.metric('peertunnel_operator_reconciles_total', { kind: 'PeerTunnel' })).toBeGreaterThan(
        0,
      );
      expect(await f.metric('peertunnel_operator_reconciles_total')).toBe(0);
    });

    it('both replicas answer the webhook', async () => {
      // Through the API server: it keeps its connection alive, so one replica may get them all.
      await env.cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(pod('before-0')) });
      // Directly, a new connection each time, the kernel spreading them over both listeners.
      const ca = await webhookCa(env.cp);
      const count = async (id: string) =>
        (await ops[id]?.metric('peertunnel_operator_webhook_requests_total', { result: 'injected' })) ?? 0;
      const before = { a: await count('op-a'), b: await count('op-b') };
      for (let i = 0; i < 30; i++) {
        const r = await review(port, ca, pod(`direct-${i}`), NS);
        expect(r.response.patch).toBeDefined();
      }
      const a = (await count('op-a')) - before.a;
      const b = (await count('op-b')) - before.b;
      process.stderr.write(`direct reviews answered: op-a ${a}, op-b ${b}\n`);
      expect(a + b).toBe(30);
      expect(a).toBeGreaterThan(0);
      expect(b).toBeGreaterThan(0);
    });

    it('the other replica takes over within 20 s of the leader being killed; pods are injected meanwhile', async () => {
      const l = ops[leader];
      const f = ops[follower];
      if (l === undefined || f === undefined) throw new Error('no leader');
      const killedAt = Date.now();
      await l.kill();
      delete ops[leader];
      // Pods created during the failover: the surviving replica answers the webhook.
      for (let i = 0; i < 5; i++) {
        await env.cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(pod(`during-${i}`)) });
        const p = await getJson<V1Pod>(env.cp, ['-n', NS, 'get', 'pod', `during-${i}`]);
        expect(p.spec?.initContainers?.filter((c) => c.name === 'peertunnel')).toHaveLength(1);
      }
      await eventually(
        'the follower to lead',
        async () => ((await holder()) === follower ? true : undefined),
        20_000,
      );
      await eventually(
        'leader metric',
        async () => ((await f.metric('peertunnel_operator_leader')) === 1 ? true : undefined),
        5_000,
      );
      const took = Date.now() - killedAt;
      process.stderr.write(`takeover after SIGKILL: ${took} ms\n`);
      expect(took).toBeLessThan(20_000);
      // The new leader reconciles: the status counts every injected pod.
      const total = await eventually('pods counted by the new leader', async () => {
        const t = await getJson<{ status?: { pods?: { injected: number } } }>(env.cp, [
          '-n',
          NS,
          'get',
          'peertunnel',
          'orders',
        ]);
        const list = await getJson<{ items: V1Pod[] }>(env.cp, ['-n', NS, 'get', 'pods']);
        return t.status?.pods?.injected === list.items.length ? list.items.length : undefined;
      });
      expect(total).toBeGreaterThanOrEqual(6);
      expect(await f.metric('peertunnel_operator_reconciles_total', { kind: 'PeerTunnel' })).toBeGreaterThan(
        0,
      );
    });

    it('a graceful stop releases the Lease at once', async () => {
      const f = ops[follower];
      if (f === undefined) throw new Error('no leader');
      await f.stop();
      delete ops[follower];
      const lease = await getJson<Lease>(env.cp, ['-n', OPERATOR_NS, 'get', 'lease', 'peertunnel-operator']);
      expect(lease.spec.holderIdentity ?? '').toBe('');
      expect(f.logs.some((l) => l.event === 'operator_stopped')).toBe(true);
    });
  },
  { users: operatorUsers },
);
