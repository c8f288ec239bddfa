/**
 * The webhook through a real API server: the API server calls the operator over HTTPS on
 * 127.0.0.1 (the MutatingWebhookConfiguration and its caBundle are the operator's own work), and
 * a selected pod comes back with exactly one sidecar, as the inject golden file expects. A second
 * pass changes nothing; unselected, opted-out and excluded-namespace pods come back untouched.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import type { ControlPlane } from '../env/control-plane.js';
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
} from './operator-harness.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/inject/native-expose', import.meta.url));
const input = parse(readFileSync(`${FIXTURE}.input.yaml`, 'utf8')) as {
  pod: V1Pod;
  tunnels: PeerTunnel[];
  networks: PeerNetwork[];
};
const golden = parse(readFileSync(`${FIXTURE}.golden.yaml`, 'utf8')) as { pod: V1Pod };
const NS = input.pod.metadata?.namespace ?? 'shop';

const sidecars = (pod: V1Pod): V1Container[] =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(
    (c) => c.name === 'peertunnel',
  );

function podNamed(name: string, namespace: string, labels: Record<string, string>): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels },
    spec: { containers: [{ name: 'app', image: 'example/app:1', ports: [{ containerPort: 8080 }] }] },
  };
}

/** `kubectl create` (not apply: that adds its last-applied annotation to what we compare). */
async function create(cp: ControlPlane, ...objects: object[]): Promise<void> {
  await cp.kubectlOk(['create', '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  });
}

describeWithControlPlane(
  'operator webhook through a real API server',
  (env) => {
    let op: OperatorProcess;
    let port = 0;

    beforeAll(async () => {
      const { cp } = env;
      await installOperatorPrerequisites(cp);
      // A status token the operator finds and keeps (it creates one only when there is none):
      // the golden renders its hash.
      await cp.kubectlOk([
        '-n',
        OPERATOR_NS,
        'create',
        'secret',
        'generic',
        'peertunnel-status-token',
        '--from-literal=token=golden-status-token-golden-status-token-000',
      ]);
      port = await freePort();
      op = await startOperator(cp, { identity: 'op-webhook', webhookPort: port });
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
      await cp.apply([...input.networks, ...input.tunnels]);
      // The leader has seen the tunnel (and so, a moment earlier, its own webhook cache).
      await waitForReason(cp, 'peertunnel/orders-db', NS, 'NoPodsSelected');
    }, 120_000);

    afterAll(async () => {
      await op?.stop();
    });

    it('keeps a MutatingWebhookConfiguration pointing at itself, with the CA of the shared Secret', async () => {
      const cfg = await getJson<{
        webhooks: Array<{
          clientConfig: { url: string; caBundle: string };
          failurePolicy: string;
          namespaceSelector: unknown;
          timeoutSeconds: number;
        }>;
      }>(env.cp, ['get', 'mutatingwebhookconfiguration', 'peertunnel']);
      const hook = cfg.webhooks[0];
      expect(hook?.clientConfig.url).toBe(`https://127.0.0.1:${port}/mutate-pods`);
      expect(hook?.failurePolicy).toBe('Ignore');
      expect(hook?.timeoutSeconds).toBe(5);
      expect(hook?.namespaceSelector).toEqual({
        matchExpressions: [
          {
            key: 'kubernetes.io/metadata.name',
            operator: 'NotIn',
            values: ['kube-node-lease', 'kube-public', 'kube-system', OPERATOR_NS],
          },
        ],
      });
      const secret = await getJson<{ data: Record<string, string> }>(env.cp, [
        '-n',
        OPERATOR_NS,
        'get',
        'secret',
        'peertunnel-webhook-tls',
      ]);
      expect(hook?.clientConfig.caBundle).toBe(secret.data['ca.crt']);
    });

    it('injects exactly one sidecar into a selected pod, as the golden file expects', async () => {
      await create(env.cp, input.pod);
      const pod = await getJson<V1Pod>(env.cp, ['-n', NS, 'get', 'pod', input.pod.metadata?.name ?? '']);
      const got = sidecars(pod);
      expect(got).toHaveLength(1);
      // The API server adds defaults (terminationMessagePath, probe successThreshold, ...): the
      // golden container must be contained in what it returns, and sit where the golden puts it.
      const want = sidecars(golden.pod)[0];
      expect(got[0]).toMatchObject(want as object);
      expect(pod.spec?.initContainers?.[0]?.name).toBe('peertunnel');
      expect(pod.spec?.initContainers?.[0]?.restartPolicy).toBe('Always');
      expect(pod.metadata?.annotations).toEqual(golden.pod.metadata?.annotations);
      expect(pod.spec?.containers.map((c) => c.name)).toEqual(['postgres']);
      expect(
        await op.metric('peertunnel_operator_webhook_requests_total', { result: 'injected' }),
      ).toBeGreaterThanOrEqual(1);
    });

    it('changes nothing on a second pass', async () => {
      const pod = await getJson<V1Pod>(env.cp, ['-n', NS, 'get', 'pod', input.pod.metadata?.name ?? '']);
      // Through the API server again: the injected pod, created anew (server-side dry run).
      const again: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: 'postgres-again',
          namespace: NS,
          labels: pod.metadata?.labels,
          annotations: pod.metadata?.annotations,
        },
        spec: pod.spec,
      };
      const out = JSON.parse(
        await env.cp.kubectlOk(['create', '--dry-run=server', '-o', 'json', '-f', '-'], {
          input: JSON.stringify(again),
        }),
      ) as V1Pod;
      expect(sidecars(out)).toHaveLength(1);
      expect(out.spec).toEqual(pod.spec);
      expect(out.metadata?.annotations).toEqual(pod.metadata?.annotations);
      // And straight to the webhook: allowed with no patch at all.
      const secret = await getJson<{ data: Record<string, string> }>(env.cp, [
        '-n',
        OPERATOR_NS,
        'get',
        'secret',
        'peertunnel-webhook-tls',
      ]);
      const ca = Buffer.from(secret.data['ca.crt'] ?? '', 'base64').toString('utf8');
      const r = await review(port, ca, pod, NS);
      expect(r.response.allowed).toBe(true);
      expect(r.response.patch).toBeUndefined();
      expect(
        await op.metric('peertunnel_operator_webhook_requests_total', {
          result: 'skipped',
          reason: 'AlreadyInjected',
        }),
      ).toBeGreaterThanOrEqual(2);
    });

    it('leaves unselected and opted-out pods untouched', async () => {
      const before = await op.metric('peertunnel_operator_webhook_requests_total', {
        result: 'skipped',
        reason: 'NoMatchingTunnel',
      });
      const plain = podNamed('web-0', NS, { app: 'web' });
      await create(env.cp, plain);
      const out = await getJson<V1Pod>(env.cp, ['-n', NS, 'get', 'pod', 'web-0']);
      expect(sidecars(out)).toHaveLength(0);
      expect(out.metadata?.annotations).toBeUndefined();
      expect(out.spec?.initContainers).toBeUndefined();
      expect(out.spec?.containers).toMatchObject(plain.spec?.containers ?? []);
      // The API server did ask: the webhook answered "no tunnel selects it".
      expect(
        await op.metric('peertunnel_operator_webhook_requests_total', {
          result: 'skipped',
          reason: 'NoMatchingTunnel',
        }),
      ).toBe(before + 1);

      const optedOut = podNamed('postgres-manual', NS, { app: 'postgres', 'peertunnel.io/inject': 'false' });
      await create(env.cp, optedOut);
      expect(
        sidecars(await getJson<V1Pod>(env.cp, ['-n', NS, 'get', 'pod', 'postgres-manual'])),
      ).toHaveLength(0);
    });

    it('never touches the operator namespace or kube-system, even with a selecting tunnel there', async () => {
      for (const ns of [OPERATOR_NS, 'kube-system']) {
        await env.cp.apply([
          { ...input.networks[0], metadata: { name: 'mesh', namespace: ns } },
          { ...input.tunnels[0], metadata: { name: 'orders-db', namespace: ns } },
        ]);
      }
      const requests = await op.metric('peertunnel_operator_webhook_requests_total');
      for (const ns of [OPERATOR_NS, 'kube-system']) {
        const pod = podNamed('postgres-0', ns, { app: 'postgres' });
        await create(env.cp, pod);
        const out = await getJson<V1Pod>(env.cp, ['-n', ns, 'get', 'pod', 'postgres-0']);
        expect(sidecars(out)).toHaveLength(0);
        expect(out.metadata?.annotations).toBeUndefined();
      }
      // The namespaceSelector kept the API server from even calling the webhook.
      expect(await op.metric('peertunnel_operator_webhook_requests_total')).toBe(requests);
    });

    it('answers within milliseconds (webhook latency under 50 pod creations)', async () => {
      const count0 = await op.metric('peertunnel_operator_webhook_duration_seconds_count');
      const sum0 = await op.metric('peertunnel_operator_webhook_duration_seconds_sum');
      const started = Date.now();
      const pods = Array.from({ length: 50 }, (_, i) => ({
        ...input.pod,
        metadata: { ...input.pod.metadata, name: `pg-${i}` },
      }));
      await create(env.cp, ...pods);
      const wall = Date.now() - started;
      const n = (await op.metric('peertunnel_operator_webhook_duration_seconds_count')) - count0;
      const mean = ((await op.metric('peertunnel_operator_webhook_duration_seconds_sum')) - sum0) / n;
      process.stderr.write(
        `webhook: ${n} reviews, mean ${(mean * 1000).toFixed(2)} ms in the operator; 50 pods applied in ${wall} ms\n`,
      );
      expect(n).toBe(50);
      expect(mean).toBeLessThan(0.05);
      const list = await getJson<{ items: V1Pod[] }>(env.cp, ['-n', NS, 'get', 'pods', '-l', 'app=postgres']);
      for (const p of list.items.filter((x) => x.metadata?.name?.startsWith('pg-')))
        expect(sidecars(p)).toHaveLength(1);
      await eventually('status counts 51 injected pods', async () => {
        const t = await getJson<{ status?: { pods?: { selected: number; injected: number } } }>(env.cp, [
          '-n',
          NS,
          'get',
          'peertunnel',
          'orders-db',
        ]);
        return t.status?.pods?.injected === 51 && t.status.pods.selected === 51 ? true : undefined;
      });
    });
  },
  { users: operatorUsers },
);
