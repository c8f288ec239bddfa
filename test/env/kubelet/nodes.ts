/**
 * Node objects for the lab hosts a cluster may use, kept alive as a kubelet keeps its node alive:
 * status Ready with the host's address, and a Lease in kube-node-lease renewed every 10 s (with a
 * controller-manager, the node lifecycle controller would otherwise mark the node unreachable after
 * 40 s and taint it NoExecute, evicting its pods).
 */
import type { KubeApi } from './api.js';
import { kubeTime } from './status.js';

export interface NodeHost {
  readonly name: string;
  readonly ip: string;
  readonly site: string | undefined;
}

const LEASE_SECONDS = 40;
export const HEARTBEAT_MS = 10_000;

/** `a/0` in cluster `x` → `x-a-0`: a valid Node name. */
export function nodeNameFor(cluster: string, host: NodeHost): string {
  return `${cluster}-${host.name}`.toLowerCase().replace(/[^a-z0-9.-]+/g, '-');
}

function nodeStatus(host: NodeHost, name: string) {
  const now = kubeTime();
  const condition = (type: string, status: string, reason: string) => ({
    type,
    status,
    reason,
    lastHeartbeatTime: now,
    lastTransitionTime: now,
  });
  return {
    conditions: [
      condition('Ready', 'True', 'KubeletReady'),
      condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory'),
      condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure'),
      condition('PIDPressure', 'False', 'KubeletHasSufficientPID'),
    ],
    addresses: [
      { type: 'InternalIP', address: host.ip },
      { type: 'Hostname', address: name },
    ],
    // One pod per host: each host is one network namespace, i.e. one pod's network.
    capacity: { pods: '1', cpu: '1', memory: '1Gi' },
    allocatable: { pods: '1', cpu: '1', memory: '1Gi' },
    nodeInfo: {
      kubeletVersion: 'v1.36.5-lab',
      kubeProxyVersion: '',
      containerRuntimeVersion: 'lab://netns',
      operatingSystem: 'linux',
      architecture: 'amd64',
      osImage: 'PeerTunnel NAT lab',
      kernelVersion: '',
      machineID: '',
      systemUUID: '',
      bootID: '',
    },
  };
}

/** Creates (or takes over) the Node and its Lease. */
export async function registerNode(
  api: KubeApi,
  cluster: string,
  host: NodeHost,
  name: string,
): Promise<void> {
  await api.call(
    'POST',
    '/api/v1/nodes',
    {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels: {
          'kubernetes.io/hostname': name,
          'kubernetes.io/os': 'linux',
          'peertunnel.io/lab-cluster': cluster,
          'peertunnel.io/lab-site': host.site ?? 'internet',
        },
      },
    },
    { ok: [201, 409] },
  );
  await heartbeat(api, host, name);
}

/** Node status and Lease renewal. */
export async function heartbeat(api: KubeApi, host: NodeHost, name: string): Promise<void> {
  await api.mergePatch(`/api/v1/nodes/${name}/status`, { status: nodeStatus(host, name) });
  const leasePath = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`;
  const spec = {
    holderIdentity: name,
    leaseDurationSeconds: LEASE_SECONDS,
    renewTime: new Date().toISOString().replace('Z', '000Z'),
  };
  const patched = await api.mergePatch(leasePath, { spec }, [200, 404]);
  if (patched === 404) {
    await api.call(
      'POST',
      '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
      { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec },
      // 404: no kube-node-lease namespace (yet); the Node status heartbeat still counts.
      { ok: [201, 409, 404] },
    );
  }
}

export async function unregisterNode(api: KubeApi, name: string): Promise<void> {
  await api.call(
    'DELETE',
    `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${name}`,
    undefined,
    {
      ok: [200, 404],
    },
  );
  await api.call('DELETE', `/api/v1/nodes/${name}`, undefined, { ok: [200, 404] });
}
