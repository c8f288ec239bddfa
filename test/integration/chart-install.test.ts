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
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';
import { CLI, testSwarmKey } from '../helpers/node-process.js';
import { CHART, find, flag, type K8sObject, parseManifests } from './chart-helpers.js';
import {
  eventsOf,
  eventually,
  freePort,
  getJson,
  type LogLine,
  readyOf,
  waitForReason,
} from './operator-harness.js';

const RELEASE = 'peertunnel';
const NS = 'peertunnel-system';
const APP_NS = 'shop';

interface Operator {
  proc: ChildProcess;
  logs: LogLine[];
  stderr: () => string;
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** The operator CLI as the chart's Deployment runs it, plus what only a pod would have. */
function startOperator(args: string[], env: Record<string, string>): Operator {
  const proc = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, ...env },
  });
  const logs: LogLine[] = [];
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  createInterface({ input: proc.stdout ?? process.stdin }).on('line', (text) => {
    try {
      logs.push(JSON.parse(text) as LogLine);
    } catch {
      stderr += `${text}\n`;
    }
    if (process.env.PEERTUNNEL_TEST_LOGS === '1') process.stderr.write(`[chart-op] ${text}\n`);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return {
    proc,
    logs,
    stderr: () => stderr,
    waitFor: (pred, timeoutMs = 60_000) =>
      eventually(
        'an operator log line',
        async () => {
          if (proc.exitCode !== null)
            throw new Error(`operator exited ${proc.exitCode}: ${stderr.slice(-1500)}`);
          return logs.find(pred);
        },
        timeoutMs,
      ),
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}

const sidecars = (pod: V1Pod): V1Container[] =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].filter(
    (c) => c.name === 'peertunnel',
  );

async function helmOk(cp: ControlPlane, args: string[]): Promise<string> {
  const r = await cp.helm(args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

describeWithControlPlane(
  'Helm chart installed into a real API server, operator under its ServiceAccount',
  (env) => {
    let op: Operator | undefined;
    let port = 0;
    let manifest: K8sObject[] = [];
    let serviceAccount = '';

    beforeAll(async () => {
      const { cp } = env;
      port = await freePort();
      await helmOk(cp, [
        'install',
        RELEASE,
        CHART,
        '--namespace',
        NS,
        '--create-namespace',
        '--set',
        `webhook.urlOverride=https://127.0.0.1:${port}/mutate-pods`,
      ]);
      manifest = parseManifests(await helmOk(cp, ['get', 'manifest', RELEASE, '--namespace', NS]));
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
      const kubeconfig = await cp.kubeconfigFor(token, { name: 'chart-operator', namespace: NS });
      // Not an admin: the token is the ServiceAccount's, bound by the chart's RBAC only.
      const who = await cp.kubectlOk(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], {
        token,
      });
      expect(who).toBe(`system:serviceaccount:${NS}:${serviceAccount}`);
      const container = find(manifest, 'Deployment').spec.template.spec.containers[0];
      const args: string[] = [
        ...container.args,
        // What differs from a pod: addresses on this host, a kubeconfig instead of the mounted token,
        // and shorter timings for a test.
        `--kubeconfig=${kubeconfig}`,
        '--health-listen=127.0.0.1:0',
        `--webhook-listen=127.0.0.1:${port}`,
        '--lease-duration=6',
        '--status-interval=1',
      ];
      expect(flag(args, 'webhook-url')).toBe(`https://127.0.0.1:${port}/mutate-pods`);
      op = startOperator(args, { POD_NAMESPACE: NS, POD_NAME: 'peertunnel-operator-test-0' });
      await op.waitFor((l) => l.event === 'operator_started');
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
