/**
 * The test control plane with the real kube-controller-manager (`controllerManager: true`):
 * Deployments make ReplicaSets make Pods, `kubectl scale` and pod deletion behave as in a real
 * cluster, owner deletion cascades, namespaces finish deleting, service accounts and their CA and
 * tokens appear. No scheduler and no kubelet: pods stay Pending and unbound, which is expected.
 * Two such control planes run side by side in one process, as the two-cluster e2e runs them.
 */
import { request as httpsRequest } from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type ControlPlane, startControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane, requireTools, TOOLS_TIMEOUT_MS } from '../env/skip.js';
import { eventually } from '../helpers/node-process.js';

const WAIT_MS = 30_000;

interface ObjectMeta {
  name: string;
  uid: string;
  deletionTimestamp?: string;
  ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
  labels?: Record<string, string>;
}
interface Pod {
  metadata: ObjectMeta;
  spec: { nodeName?: string };
  status: { phase?: string };
}
interface ReplicaSet {
  metadata: ObjectMeta;
  spec: { replicas: number };
}

function deployment(name: string, replicas: number): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        // Never pulled: nothing runs pods here.
        spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1' }] },
      },
    },
  };
}

async function list<T>(cp: ControlPlane, ns: string, kind: string, selector: string): Promise<T[]> {
  const out = await cp.kubectlOk(['-n', ns, 'get', kind, '-l', selector, '-o', 'json']);
  return (JSON.parse(out) as { items: T[] }).items;
}

const livePods = async (cp: ControlPlane, ns: string, app: string): Promise<Pod[]> =>
  (await list<Pod>(cp, ns, 'pods', `app=${app}`)).filter((p) => p.metadata.deletionTimestamp === undefined);

/** Resolves with the pods once exactly `n` live pods carry `app=<app>`. */
const podsEventually = (cp: ControlPlane, ns: string, app: string, n: number): Promise<Pod[]> =>
  eventually(
    async () => {
      const pods = await livePods(cp, ns, app);
      return pods.length === n ? pods : undefined;
    },
    WAIT_MS,
    `${n} live pods of ${app} in ${ns}`,
  );

/** GET of the API server's /version, trusting only `ca`: does this CA verify the serving cert? */
function statusWithCa(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${url}/version`, { ca, signal: AbortSignal.timeout(10_000) }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describeWithControlPlane(
  'test control plane with kube-controller-manager',
  (env) => {
    const ns = 'kcm-test';

    beforeAll(async () => {
      await env.cp.kubectlOk(['create', 'namespace', ns]);
    });

    it('a Deployment makes one ReplicaSet it controls, and that makes 3 Pending, unbound pods', async () => {
      const { cp } = env;
      await cp.kubectlOk(['-n', ns, 'apply', '-f', '-'], { input: JSON.stringify(deployment('web', 3)) });
      const dep = JSON.parse(await cp.kubectlOk(['-n', ns, 'get', 'deployment', 'web', '-o', 'json'])) as {
        metadata: ObjectMeta;
      };
      const pods = await podsEventually(cp, ns, 'web', 3);
      const rss = await list<ReplicaSet>(cp, ns, 'replicasets', 'app=web');
      expect(rss).toHaveLength(1);
      const rs = rss[0] as ReplicaSet;
      expect(rs.spec.replicas).toBe(3);
      expect(rs.metadata.ownerReferences).toEqual([
        expect.objectContaining({ kind: 'Deployment', name: 'web', uid: dep.metadata.uid, controller: true }),
      ]);
      for (const pod of pods) {
        expect(pod.metadata.ownerReferences).toEqual([
          expect.objectContaining({ kind: 'ReplicaSet', name: rs.metadata.name, uid: rs.metadata.uid }),
        ]);
        // No scheduler, no kubelet.
        expect(pod.status.phase).toBe('Pending');
        expect(pod.spec.nodeName).toBeUndefined();
      }
    });

    it('kubectl scale deployment --replicas=2 leaves 2 pods', async () => {
      const { cp } = env;
      await cp.kubectlOk(['-n', ns, 'scale', 'deployment', 'web', '--replicas=2']);
      await podsEventually(cp, ns, 'web', 2);
      const rss = await list<ReplicaSet>(cp, ns, 'replicasets', 'app=web');
      expect(rss.map((r) => r.spec.replicas)).toEqual([2]);
      // Nothing left Terminating either: an unbound pod is deleted at once.
      const all = await list<Pod>(cp, ns, 'pods', 'app=web');
      expect(all).toHaveLength(2);
    });

    it('a deleted unbound pod is gone at once and the ReplicaSet creates a replacement', async () => {
      const { cp } = env;
      const before = await podsEventually(cp, ns, 'web', 2);
      const victim = before[0] as Pod;
      await cp.kubectlOk(['-n', ns, 'delete', 'pod', victim.metadata.name, '--wait=false']);
      const after = await eventually(
        async () => {
          const pods = await list<Pod>(cp, ns, 'pods', 'app=web');
          const uids = pods.map((p) => p.metadata.uid);
          return pods.length === 2 && !uids.includes(victim.metadata.uid) ? pods : undefined;
        },
        WAIT_MS,
        'a replacement pod',
      );
      const survivor = before[1] as Pod;
      expect(after.map((p) => p.metadata.uid)).toContain(survivor.metadata.uid);
      const replacement = after.find((p) => p.metadata.uid !== survivor.metadata.uid) as Pod;
      expect(replacement.metadata.name).not.toBe(victim.metadata.name);
    });

    it('a deleted pod bound to a node stays Terminating (no kubelet), is replaced, and goes with grace period 0', async () => {
      const { cp } = env;
      const [bound] = await podsEventually(cp, ns, 'web', 2);
      const name = (bound as Pod).metadata.name;
      // What the scheduler (or a fake kubelet) does: the binding subresource sets spec.nodeName.
      const binding = await cp.request(`/api/v1/namespaces/${ns}/pods/${name}/binding`, {
        method: 'POST',
        body: JSON.stringify({
          apiVersion: 'v1',
          kind: 'Binding',
          metadata: { name },
          target: { apiVersion: 'v1', kind: 'Node', name: 'no-such-node' },
        }),
      });
      expect(binding.status).toBe(201);
      await cp.kubectlOk(['-n', ns, 'delete', 'pod', name, '--wait=false']);
      const terminating = (await list<Pod>(cp, ns, 'pods', 'app=web')).find((p) => p.metadata.name === name);
      expect(terminating?.metadata.deletionTimestamp).toBeDefined();
      expect(terminating?.spec.nodeName).toBe('no-such-node');
      // The ReplicaSet does not count a terminating pod: 2 live ones again, besides it.
      const live = await podsEventually(cp, ns, 'web', 2);
      expect(live.map((p) => p.metadata.name)).not.toContain(name);
      expect((await list<Pod>(cp, ns, 'pods', 'app=web')).map((p) => p.metadata.name)).toContain(name);
      await cp.kubectlOk(['-n', ns, 'delete', 'pod', name, '--grace-period=0', '--force']);
      await eventually(
        async () =>
          (await list<Pod>(cp, ns, 'pods', 'app=web')).every((p) => p.metadata.name !== name)
            ? true
            : undefined,
        WAIT_MS,
        `pod ${name} gone`,
      );
    });

    it('deleting the Deployment takes its ReplicaSet and pods along (garbage collector)', async () => {
      const { cp } = env;
      await cp.kubectlOk(['-n', ns, 'delete', 'deployment', 'web', '--wait=false']);
      await eventually(
        async () => {
          const left = [
            ...(await list<ReplicaSet>(cp, ns, 'replicasets', 'app=web')),
            ...(await list<Pod>(cp, ns, 'pods', 'app=web')),
          ];
          return left.length === 0 ? true : undefined;
        },
        WAIT_MS,
        'ReplicaSets and pods of web gone',
      );
    });

    it('every namespace gets a default ServiceAccount and a kube-root-ca.crt that verifies the API server', async () => {
      const { cp } = env;
      await eventually(
        async () => ((await cp.kubectl(['-n', ns, 'get', 'sa', 'default'])).code === 0 ? true : undefined),
        WAIT_MS,
        'default ServiceAccount',
      );
      const ca = await eventually(
        async () => {
          const r = await cp.kubectl([
            '-n',
            ns,
            'get',
            'configmap',
            'kube-root-ca.crt',
            '-o',
            "jsonpath={.data['ca\\.crt']}",
          ]);
          return r.code === 0 && r.stdout.includes('BEGIN CERTIFICATE') ? r.stdout : undefined;
        },
        WAIT_MS,
        'kube-root-ca.crt',
      );
      expect(await statusWithCa(cp.url, ca)).toBe(200);
    });

    it('a service-account-token Secret gets a token the API server accepts as that service account', async () => {
      const { cp } = env;
      await cp.kubectlOk(['-n', ns, 'create', 'serviceaccount', 'robot']);
      await cp.apply({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/service-account-token',
        metadata: {
          name: 'robot-token',
          namespace: ns,
          annotations: { 'kubernetes.io/service-account.name': 'robot' },
        },
      });
      const token = await eventually(
        async () => {
          const r = await cp.kubectl([
            '-n',
            ns,
            'get',
            'secret',
            'robot-token',
            '-o',
            'jsonpath={.data.token}',
          ]);
          return r.code === 0 && r.stdout !== ''
            ? Buffer.from(r.stdout, 'base64').toString('utf8')
            : undefined;
        },
        WAIT_MS,
        'a token in robot-token',
      );
      const who = JSON.parse(await cp.kubectlOk(['auth', 'whoami', '-o', 'json'], { token })) as {
        status: { userInfo: { username: string } };
      };
      expect(who.status.userInfo.username).toBe(`system:serviceaccount:${ns}:robot`);
    });

    it('a deleted namespace is emptied and goes away (namespace controller)', async () => {
      const { cp } = env;
      await cp.kubectlOk(['create', 'namespace', 'kcm-doomed']);
      await cp.kubectlOk(['-n', 'kcm-doomed', 'create', 'configmap', 'x', '--from-literal=a=b']);
      await cp.kubectlOk(['delete', 'namespace', 'kcm-doomed', '--wait=false']);
      await eventually(
        async () => ((await cp.kubectl(['get', 'namespace', 'kcm-doomed'])).code === 1 ? true : undefined),
        WAIT_MS,
        'namespace kcm-doomed gone',
      );
      const gone = await cp.kubectl(['get', 'namespace', 'kcm-doomed']);
      expect(gone.stderr).toMatch(/NotFound/);
    });
  },
  { controllerManager: true },
);

describe('two control planes with kube-controller-manager in one process', () => {
  const planes: ControlPlane[] = [];
  let skipped = false;

  beforeAll(async () => {
    const tools = await requireTools('two control planes with kube-controller-manager');
    if (tools === undefined) {
      skipped = true;
      return;
    }
    // Started at once, as the two-cluster e2e may: ports and dirs must not collide.
    const started = await Promise.allSettled([
      startControlPlane({ tools, controllerManager: true }),
      startControlPlane({ tools, controllerManager: true }),
    ]);
    for (const s of started) if (s.status === 'fulfilled') planes.push(s.value);
    for (const s of started) if (s.status === 'rejected') throw s.reason;
  }, TOOLS_TIMEOUT_MS);

  afterAll(async () => {
    await Promise.all(planes.map((p) => p.stop()));
  });

  it('each reconciles its own Deployment of the same name, with its own replica count', async () => {
    if (skipped) return;
    const [a, b] = planes as [ControlPlane, ControlPlane];
    expect(a.dir).not.toBe(b.dir);
    expect(a.url).not.toBe(b.url);
    await a.apply(deployment('twin', 1));
    await b.apply(deployment('twin', 3));
    await podsEventually(a, 'default', 'twin', 1);
    await podsEventually(b, 'default', 'twin', 3);
    await b.kubectlOk(['scale', 'deployment', 'twin', '--replicas=2']);
    await podsEventually(b, 'default', 'twin', 2);
    // The other cluster's controllers did not touch this one.
    expect(await livePods(a, 'default', 'twin')).toHaveLength(1);
  });
});
