/**
 * One cluster of the two-cluster test, as a user's: a real kube-apiserver + etcd +
 * kube-controller-manager + kube-scheduler, and real nodes (containerd, kubelet, kube-proxy; CNI
 * bridge) each inside a NAT-lab host's network namespace (test/env/real-node.ts), running the
 * images built here from the Dockerfile and Debian packages. The chart is installed with helm: the
 * operator and its webhook run as pods, and the API server calls the webhook through its Service.
 * Then the README's first commands: the namespace and the swarm key Secret.
 */
import { installChartAsPods, type PodsRelease } from '../env/chart-release.js';
import { type ControlPlane, REAL_CLUSTER_API_SERVER_ARGS, startControlPlane } from '../env/control-plane.js';
import { REAL_NODE_CONTROLLERS } from '../env/controller-manager.js';
import type { BuiltImage } from '../env/images.js';
import { type RealNode, startRealNode } from '../env/real-node.js';
import { ensureNodeTools, ensureTools } from '../env/tools.js';
import type { LabHost } from '../lab/index.js';

export const APP_NS = 'shop';

export interface NodePlan {
  /** The Node's name. */
  name: string;
  /** The lab host whose network namespace it lives in. */
  host: LabHost;
  /** Its pod addresses (distinct per node, inside the lab's NATed range). */
  podCidr: string;
  /** Made unschedulable once Ready (the test moves pods with cordon and uncordon). */
  cordoned?: boolean;
}

export interface Cluster {
  readonly name: string;
  readonly cp: ControlPlane;
  readonly release: PodsRelease;
  readonly nodes: readonly RealNode[];
  /** kubectl against this cluster, stdout or a thrown CommandFailedError. */
  kubectl(args: readonly string[], input?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  name: string;
  nodes: readonly NodePlan[];
  /** pause, peertunnel and redis, imported into every node. */
  images: readonly BuiltImage[];
  peertunnelImage: string;
  /** A file holding the swarm key (`peertunnel keygen > swarm.key`). */
  swarmKeyFile: string;
}

/** Stops what was started, last first; collects errors and throws the first. */
async function stopAll(steps: Array<() => Promise<void>>): Promise<void> {
  const errors: unknown[] = [];
  for (const s of [...steps].reverse()) {
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
    const nodeTools = await ensureNodeTools();
    const cp = await startControlPlane({
      tools: await ensureTools(),
      controllerManager: true,
      // A kubelet registers its Node with the not-ready taint; the node lifecycle controller lifts it.
      controllerManagerArgs: { controllers: REAL_NODE_CONTROLLERS.join(',') },
      scheduler: nodeTools.kubeScheduler,
      egressProxy: true,
      apiServerArgs: REAL_CLUSTER_API_SERVER_ARGS,
    });
    stops.push(() => cp.stop());
    const kubectl = (args: readonly string[], input?: string) =>
      cp.kubectlOk(args, input === undefined ? { timeoutMs: 150_000 } : { input, timeoutMs: 150_000 });
    const nodes: RealNode[] = [];
    const started = await Promise.allSettled(
      o.nodes.map((n) =>
        startRealNode({
          name: n.name,
          cp,
          host: n.host,
          podCidr: n.podCidr,
          tools: nodeTools,
          images: o.images,
        }),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value);
    for (const n of nodes) stops.push(() => n.stop());
    for (const s of started) if (s.status === 'rejected') throw s.reason;
    for (const n of o.nodes) if (n.cordoned === true) await kubectl(['cordon', n.name]);
    // README: helm install peertunnel charts/peertunnel -n peertunnel-system --create-namespace
    // (with the image built here).
    const release = await installChartAsPods(cp, { image: o.peertunnelImage });
    // README: `kubectl create namespace shop`, `kubectl -n shop create secret generic mesh-key --from-file=swarm.key`.
    await kubectl(['create', 'namespace', APP_NS]);
    await kubectl(['label', 'namespace', APP_NS, 'pod-security.kubernetes.io/enforce=restricted']);
    await kubectl(['-n', APP_NS, 'create', 'secret', 'generic', 'mesh-key', `--from-file=${o.swarmKeyFile}`]);
    return { name: o.name, cp, release, nodes, kubectl, stop: () => stopAll(stops) };
  } catch (err) {
    await stopAll(stops).catch(() => undefined);
    throw err;
  }
}
