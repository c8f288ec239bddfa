/**
 * Pods of a real cluster as the walk-through uses them, through the API server only: `kubectl
 * exec` (API server → egress proxy → the node's kubelet → containerd), `kubectl logs`, and the
 * sidecar's /metrics through the API server's pod proxy (which dials the pod's own address).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { eventually } from '../integration/operator-harness.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number | null;
}

/** What the redis workload needs of a pod: `kubectl exec`. */
export interface PodExec {
  exec(
    container: string,
    argv: readonly string[],
    opts?: { input?: string; timeoutMs?: number },
  ): Promise<ExecResult>;
}

/** The sidecar's admin port (container port `pt-admin`), by the operator's default settings. */
export const ADMIN_PORT = 9090;

export class ClusterPod implements PodExec {
  constructor(
    private readonly cp: ControlPlane,
    readonly pod: V1Pod,
  ) {}
  get namespace(): string {
    return this.pod.metadata?.namespace ?? '';
  }
  get name(): string {
    return this.pod.metadata?.name ?? '';
  }
  get uid(): string {
    return this.pod.metadata?.uid ?? '';
  }
  get nodeName(): string {
    return this.pod.spec?.nodeName ?? '';
  }
  get ip(): string {
    return this.pod.status?.podIP ?? '';
  }

  async exec(
    container: string,
    argv: readonly string[],
    opts: { input?: string; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    const args = ['-n', this.namespace, 'exec', ...(opts.input === undefined ? [] : ['-i']), this.name];
    return this.cp.kubectl([...args, '-c', container, '--', ...argv], {
      ...(opts.input === undefined ? {} : { input: opts.input }),
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
  }

  /** `kubectl logs` of a container (its current run). */
  async logs(container: string): Promise<string> {
    const r = await this.cp.kubectl(['-n', this.namespace, 'logs', this.name, '-c', container]);
    return `${r.stdout}${r.stderr}`;
  }

  /** The sidecar's /metrics, through the API server's pod proxy. */
  async metrics(port = ADMIN_PORT): Promise<string> {
    return this.cp.kubectlOk([
      'get',
      '--raw',
      `/api/v1/namespaces/${this.namespace}/pods/${this.name}:${port}/proxy/metrics`,
    ]);
  }
}

const isReady = (p: V1Pod): boolean =>
  p.metadata?.deletionTimestamp === undefined &&
  p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true;

/** Waits for a Ready pod of `namespace` that `match` accepts. */
export async function waitForPod(
  cp: ControlPlane,
  namespace: string,
  match: (p: V1Pod) => boolean,
  timeoutMs = 120_000,
): Promise<ClusterPod> {
  try {
    return await eventually(
      `a Ready pod in ${namespace}`,
      async () => {
        const list = JSON.parse(await cp.kubectlOk(['-n', namespace, 'get', 'pods', '-o', 'json'])) as {
          items: V1Pod[];
        };
        const pod = list.items.find((p) => match(p) && isReady(p));
        return pod === undefined ? undefined : new ClusterPod(cp, pod);
      },
      timeoutMs,
    );
  } catch (err) {
    const wide = await cp.kubectl(['-n', namespace, 'get', 'pods', '-o', 'wide']);
    const events = await cp.kubectl(['-n', namespace, 'get', 'events', '--sort-by=.lastTimestamp']);
    // The last lines of every container of the pods it waited for, for why they are not Ready.
    const logs: string[] = [];
    for (const p of await listPods(cp, namespace)) {
      if (!match(p.pod)) continue;
      const r = await cp.kubectl(['-n', namespace, 'logs', p.name, '--all-containers', '--tail=12']);
      logs.push(`--- ${p.name} ---\n${r.stdout}${r.stderr}`);
    }
    throw new Error(
      `${String(err)}\n${wide.stdout}\n${events.stdout.split('\n').slice(-25).join('\n')}\n${logs.join('\n')}`,
    );
  }
}

/** Every pod of `namespace`. */
export async function listPods(cp: ControlPlane, namespace: string): Promise<ClusterPod[]> {
  const list = JSON.parse(await cp.kubectlOk(['-n', namespace, 'get', 'pods', '-o', 'json'])) as {
    items: V1Pod[];
  };
  return list.items.map((p) => new ClusterPod(cp, p));
}
