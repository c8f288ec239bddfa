/**
 * `helm install` of the chart into a real API server, then the operator running as a process with
 * nothing but a real token of the chart's ServiceAccount (TokenRequest), with the flags of the
 * chart's own Deployment (only the listen addresses, kubeconfig and test timings added). It does
 * its whole job under those grants: leader Lease, the webhook Secret, caBundle on the chart's
 * MutatingWebhookConfiguration, network and tunnel status, a relay's Deployment, Service and
 * identity Secret, events, and the injection of a sidecar into a pod created through the API
 * server. A verb missing from the chart's RBAC fails one of these steps (and the log check: no 403).
 *
 * The API server has no kube-proxy, so the Service-based webhook cannot be called here: the release
 * is installed with webhook.urlOverride, the value meant for service-less clusters. Monitoring
 * objects stay disabled (this API server has no Prometheus Operator CRDs).
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import {
  type ChartOperator,
  type ChartRelease,
  helmOk,
  installChart,
  RELEASE_NS as NS,
  RELEASE,
  startChartOperator,
} from '../env/chart-release.js';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import { find, flag, type K8sObject } from './chart-helpers.js';
import { eventsOf, eventually, freePort, getJson, readyOf, waitForReason } from './operator-harness.js';

const APP_NS = 'shop';

const sidecars = (pod: V1Pod): V1Container[] =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(
    (c) => c.name === 'peertunnel',
  );

describeWithControlPlane(
  'Helm chart installed into a real API server, operator under its ServiceAccount',
  (env) => {
    let op: ChartOperator | undefined;
    let port = 0;
    let rel: ChartRelease;
    let manifest: K8sObject[] = [];
    let serviceAccount = '';

    beforeAll(async () => {
      port = await freePort();
      rel = await installChart(env.cp, { webhookPort: port });
      manifest = rel.manifest;
    }, 180_000);

    afterAll(async () => {
      await op?.stop();
    });

    it('installs the CRDs and every object of the chart', async () => {
      const { cp } = env;
      await cp.kubectlOk([
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        'crd/peertunnels.peertunnel.io',
        'crd/peernetworks.peertunnel.io',
      ]);
      const status = await helmOk(cp, ['status', RELEASE, '--namespace', NS]);
      expect(status).toContain('STATUS: deployed');
      expect(status).toContain('peertunnel keygen > swarm.key');
      for (const o of manifest) {
        const group = o.apiVersion.includes('/') ? `.${o.apiVersion.split('/')[0]}` : '';
        const ref = `${o.kind.toLowerCase()}${group}/${o.metadata.name}`;
        const args =
          o.metadata.namespace === undefined ? ['get', ref] : ['-n', o.metadata.namespace, 'get', ref];
        await cp.kubectlOk([...args, '-o', 'name']);
      }
      serviceAccount = find(manifest, 'Deployment').spec.template.spec.serviceAccountName;
      // Before the operator runs, the configuration is Helm's alone: no caBundle yet.
      const mwc = await getJson<K8sObject>(cp, ['get', 'mutatingwebhookconfiguration', RELEASE]);
      expect(mwc.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
      expect(mwc.webhooks[0].clientConfig.caBundle).toBeUndefined();
    });

    it('runs the operator with only the chart ServiceAccount’s token and the Deployment’s flags', async () => {
      const { cp } = env;
      const token = await cp.serviceAccountToken(NS, serviceAccount);
      // Not an admin: the token is the ServiceAccount's, bound by the chart's RBAC only.
      const who = await cp.kubectlOk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], {
        token,
      });
      expect(who).toBe(`system:serviceaccount:${NS}:${serviceAccount}`);
      // startChartOperator runs it under such a token (its own TokenRequest), with the Deployment's args.
      expect(rel.serviceAccount).toBe(serviceAccount);
      op = await startChartOperator(cp, rel);
      expect(op.args.slice(0, rel.operatorArgs.length)).toEqual(
        find(manifest, 'Deployment').spec.template.spec.containers[0].args,
      );
      const args = op.args;
      expect(flag(args, 'webhook-url')).toBe(`https://127.0.0.1:${port}/mutate-pods`);
      // Leader: the Lease the chart's Role allows.
      await eventually('the leader Lease', async () => {
        const lease = await getJson<{ spec?: { holderIdentity?: string } }>(cp, [
          '-n',
          NS,
          'get',
          'lease',
          flag(args, 'lease-name') ?? '',
        ]);
        return lease.spec?.holderIdentity === 'peertunnel-operator-test-0' ? true : undefined;
      });
    }, 120_000);

    it('keeps caBundle current on the chart’s MutatingWebhookConfiguration, from the Secret it issued', async () => {
      const { cp } = env;
      const secret = await getJson<{ data: Record<string, string> }>(cp, [
        '-n',
        NS,
        'get',
        'secret',
        `${RELEASE}-webhook-tls`,
      ]);
      const mwc = await eventually('caBundle', async () => {
        const m = await getJson<K8sObject>(cp, ['get', 'mutatingwebhookconfiguration', RELEASE]);
        return m.webhooks[0].clientConfig.caBundle !== undefined ? m : undefined;
      });
      expect(mwc.webhooks[0].clientConfig.caBundle).toBe(secret.data['ca.crt']);
      // Still Helm's object (helm uninstall removes it), with the operator's field manager on caBundle.
      expect(mwc.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('Helm');
      expect(mwc.metadata.annotations?.['meta.helm.sh/release-name']).toBe(RELEASE);
      expect(mwc.webhooks[0].clientConfig.url).toBe(`https://127.0.0.1:${port}/mutate-pods`);
    });

    it('reconciles networks (with a relay) and tunnels, writes status, and injects a selected pod', async () => {
      const { cp } = env;
      await cp.kubectlOk(['create', 'namespace', APP_NS]);
      await cp.kubectlOk([
        '-n',
        APP_NS,
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
          metadata: { name: 'mesh', namespace: APP_NS },
          spec: {
            swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' },
            // The operator runs the relay: Deployment, Service and identity Secret, under the chart's RBAC.
            relay: { enabled: true, serviceType: 'ClusterIP' },
          },
        },
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'orders-db', namespace: APP_NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'postgres' } },
            expose: [{ name: 'orders-db', port: 5432 }],
          },
        },
      ]);
      const network = await waitForReason(cp, 'peernetwork/mesh', APP_NS, 'Ready', 60_000);
      expect((network.status?.relayAddresses as string[] | undefined)?.length).toBe(1);
      await cp.kubectlOk([
        '-n',
        APP_NS,
        'get',
        'deployment/mesh-relay-0',
        'service/mesh-relay-0',
        'secret/mesh-relay-identity',
      ]);
      await waitForReason(cp, 'peertunnel/orders-db', APP_NS, 'NoPodsSelected', 60_000);

      // A pod created through the API server: the API server calls the operator's webhook.
      const created = JSON.parse(
        await cp.kubectlOk(['create', '-f', '-', '-o', 'json'], {
          input: JSON.stringify({
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name: 'postgres-0', namespace: APP_NS, labels: { app: 'postgres' } },
            spec: {
              containers: [{ name: 'postgres', image: 'postgres:17', ports: [{ containerPort: 5432 }] }],
            },
          }),
        }),
      ) as V1Pod;
      const injected = sidecars(created);
      expect(injected).toHaveLength(1);
      expect(injected[0]?.image).toBe(
        flag(find(manifest, 'Deployment').spec.template.spec.containers[0].args, 'sidecar-image'),
      );
      // The tunnel's status follows the pod (Pending, no kubelet: its sidecar is not ready).
      const tunnel = await eventually('tunnel status after the pod', async () => {
        const t = await getJson<{ status?: { conditions?: Array<{ type: string; reason: string }> } }>(cp, [
          '-n',
          APP_NS,
          'get',
          'peertunnel/orders-db',
        ]);
        const reason = t.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
        return reason !== undefined && reason !== 'NoPodsSelected' ? t : undefined;
      });
      expect(readyOf(tunnel as Parameters<typeof readyOf>[0])?.reason).toBe('SidecarsNotReady');
      // Events are written too (events.k8s.io create/patch).
      await eventually('a relay event', async () => {
        const events = await eventsOf(cp, APP_NS, 'PeerNetwork', 'mesh');
        return events.length > 0 ? events : undefined;
      });
    }, 180_000);

    it('never met a refusal from the API server on the way', () => {
      const refused = (op?.logs ?? []).filter((l) => /forbidden|\b403\b/i.test(JSON.stringify(l)));
      expect(refused).toEqual([]);
      expect(op?.stderr() ?? '').not.toMatch(/forbidden/i);
    });

    it('helm uninstall removes the webhook configuration and keeps the CRDs', async () => {
      const { cp } = env;
      await op?.stop();
      op = undefined;
      await helmOk(cp, ['uninstall', RELEASE, '--namespace', NS]);
      const r = await cp.kubectl(['get', 'mutatingwebhookconfiguration', RELEASE]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('NotFound');
      await cp.kubectlOk(['get', 'crd/peertunnels.peertunnel.io']);
    });
  },
);
