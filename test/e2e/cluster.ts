/**
 * One cluster of the two-cluster test: a real kube-apiserver + etcd + kube-controller-manager on
 * 127.0.0.1, the chart installed with helm, its operator running as a process under the chart's
 * ServiceAccount, and a lab kubelet running the cluster's pods in lab hosts' network namespaces.
 * Then the README's first commands: the namespace and the swarm key Secret.
 */
import type { V1Pod } from '@kubernetes/client-node';
import {
  type ChartOperator,
  type ChartRelease,
  installChart,
  startChartOperator,
} from '../env/chart-release.js';
import { type ControlPlane, startControlPlane } from '../env/control-plane.js';
import { type LabKubelet, startLabKubelet } from '../env/lab-kubelet.js';
import { ensureTools } from '../env/tools.js';
import { freePort } from '../integration/operator-harness.js';
import type { Lab, LabHost } from '../lab/index.js';

export const APP_NS = 'shop';

export interface Cluster {
  readonly name: string;
  readonly cp: ControlPlane;
  readonly release: ChartRelease;
  readonly operator: ChartOperator;
  readonly kubelet: LabKubelet;
  /** kubectl against this cluster, stdout or a thrown CommandFailedError. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  name: string;
  lab: Lab;
  nodes: LabHost[];
  place?: (pod: V1Pod, free: LabHost[]) => LabHost | undefined;
  /** A file holding the swarm key (`peertunnel keygen > swarm.key`). */
  swarmKeyFile: string;
}

/** Stops what was started, last first; collects errors and throws the first. */
async function stopAll(steps: Array<(() => Promise<void>) | undefined>): Promise<void> {
  const errors: unknown[] = [];
  for (const s of steps.reverse()) {
    if (s === undefined) continue;
    try {
      await s();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length > 0) throw errors[0];
}

export async function startCluster(o: StartClusterOptions): Promise<Cluster> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const cp = await startControlPlane({ tools: await ensureTools(), controllerManager: true });
    stops.push(() => cp.stop());
    const release = await installChart(cp, { webhookPort: await freePort() });
    // Lab-only: the sidecars' admin ports are reached through the kubelet's forwards on this host.
    const operator = await startChartOperator(cp, release, {
      identity: `operator-${o.name}`,
      logPrefix: `op-${o.name}`,
      extraArgs: ['--trust-admin-address-annotation'],
    });
    stops.push(() => operator.stop());
    const kubelet = await startLabKubelet({
      name: `lab-${o.name}`,
      cp,
      lab: o.lab,
      nodes: o.nodes,
      ...(o.place === undefined ? {} : { place: o.place }),
      namespaces: [APP_NS],
    });
    stops.push(() => kubelet.stop());
    const kubectl = (args: readonly string[], input?: string) =>
      cp.kubectlOk(args, input === undefined ? {} : { input });
    // README: `kubectl create namespace shop`, `kubectl -n shop create secret generic mesh-key --from-file=swarm.key`.
    await kubectl(['create', 'namespace', APP_NS]);
    await kubectl(['-n', APP_NS, 'create', 'secret', 'generic', 'mesh-key', `--from-file=${o.swarmKeyFile}`]);
    return {
      name: o.name,
      cp,
      release,
      operator,
      kubelet,
      kubectl,
      stop: () => stopAll(stops),
    };
  } catch (err) {
    await stopAll(stops).catch(() => undefined);
    throw err;
  }
}
