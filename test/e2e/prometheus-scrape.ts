/**
 * Prometheus scraping PeerTunnel's pods the way the chart's PodMonitor and ServiceMonitor select
 * them: every running pod with a container port named `pt-admin` (sidecars, relays), and the
 * operator's pods at their `http-health` port. Debian's Prometheus is built without Kubernetes
 * service discovery, so the test lists the pods from the API server and hands Prometheus static
 * targets. The lab's nodes live in network namespaces this host cannot route to, so each scrape goes
 * through the API server's pod proxy, which dials the pod's own address.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { Cluster } from './cluster.js';
import { APP_NS } from './cluster.js';
import { listPods } from './pods.js';

/** The job names the chart's monitors give (`<namespace>/<monitor name>`), as dashboards expect. */
export const SIDECARS_JOB = 'peertunnel-system/peertunnel-sidecars';
export const OPERATOR_JOB = 'peertunnel-system/peertunnel-operator';

/** The pod's container port called `name` (init containers too: native sidecars live there). */
function portNamed(pod: V1Pod, name: string): number | undefined {
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    const p = c.ports?.find((x) => x.name === name);
    if (p !== undefined) return p.containerPort;
  }
  return undefined;
}

/** Scrape configs for one cluster's pods as they are now; writes its CA and token files into `dir`. */
export async function apiProxyScrapeConfigs(c: Cluster, dir: string): Promise<object[]> {
  const caFile = join(dir, `${c.name}-ca.pem`);
  const tokenFile = join(dir, `${c.name}-token`);
  await writeFile(caFile, c.cp.caPem);
  await writeFile(tokenFile, c.cp.adminToken, { mode: 0o600 });
  const job = async (name: string, jobLabel: string, namespace: string, portName: string) => {
    const targets = (await listPods(c.cp, namespace)).flatMap((p) => {
      const port = portNamed(p.pod, portName);
      if (port === undefined || p.pod.status?.phase !== 'Running') return [];
      return [
        {
          targets: [new URL(c.cp.url).host],
          labels: {
            __metrics_path__: `/api/v1/namespaces/${namespace}/pods/${p.name}:${port}/proxy/metrics`,
            cluster: c.name,
            namespace,
            pod: p.name,
            pod_ip: p.ip,
          },
        },
      ];
    });
    return {
      job_name: `${name}-${c.name}`,
      scheme: 'https',
      tls_config: { ca_file: caFile },
      authorization: { credentials_file: tokenFile },
      static_configs: targets,
      relabel_configs: [{ target_label: 'job', replacement: jobLabel }],
    };
  };
  return [
    await job('sidecars', SIDECARS_JOB, APP_NS, 'pt-admin'),
    await job('operator', OPERATOR_JOB, c.release.namespace, 'http-health'),
  ];
}
