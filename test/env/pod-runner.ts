/**
 * A pod runner for tests: plays the kubelet's part for one injected sidecar. Given a pod from the
 * API server, it resolves the sidecar container's env as a kubelet would (values, and
 * `secretKeyRef` read from the API), runs its command (the image's entrypoint is the `peertunnel`
 * CLI, so `args` run as `peertunnel <args>`) as a local process, and reports back: pod IP, phase,
 * the sidecar's readiness (its /readyz, as the readiness probe would) in the pod's status, and where
 * its admin server listens in the `peertunnel.io/admin-address` annotation (the operator reads it
 * when started with --trust-admin-address-annotation).
 *
 * Every pod shares this host's loopback, unlike real pods: the runner rewrites the node config's
 * libp2p and admin listen addresses to 127.0.0.1 with free ports.
 */
import type { V1Container, V1EnvVar, V1Pod, V1Secret } from '@kubernetes/client-node';
import { ADMIN_ADDRESS_ANNOTATION } from '../../operator/controller/sidecar-client.js';
import { CONFIG_ENV, type NodeConfigInput } from '../../sidecar/config.js';
import { type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import type { ControlPlane } from './control-plane.js';

export interface RunningSidecar {
  readonly pod: string;
  readonly node: NodeProcess;
  /** 127.0.0.1:port of the sidecar's admin server. */
  readonly admin: string;
  stop(): Promise<void>;
}

export interface PodRunnerOptions {
  /** Name of the injected container. @default peertunnel */
  containerName?: string;
  /** How often readiness is probed and reported. @default 500 ms */
  probeMs?: number;
}

/** A sidecar that cannot be run: what is wrong with the pod, in a sentence. */
export class PodRunnerError extends Error {
  constructor(pod: string, reason: string) {
    super(`pod ${pod}: ${reason}`);
    this.name = 'PodRunnerError';
  }
}

async function getJson<T>(cp: ControlPlane, path: string): Promise<T> {
  const r = await cp.request(path);
  if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.body.slice(0, 300)}`);
  return JSON.parse(r.body) as T;
}

async function resolveEnv(cp: ControlPlane, ns: string, pod: string, env: readonly V1EnvVar[]) {
  const out: Record<string, string> = {};
  for (const e of env) {
    if (e.value !== undefined) out[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef !== undefined) {
      const ref = e.valueFrom.secretKeyRef;
      const r = await cp.request(`/api/v1/namespaces/${ns}/secrets/${ref.name}`);
      const data = r.status === 200 ? (JSON.parse(r.body) as V1Secret).data?.[ref.key] : undefined;
      if (data === undefined) {
        if (ref.optional === true) continue;
        // What the kubelet reports as CreateContainerConfigError.
        throw new PodRunnerError(pod, `secret "${ref.name}" key "${ref.key}" not found (env ${e.name})`);
      }
      out[e.name] = Buffer.from(data, 'base64').toString('utf8');
    } else if (e.valueFrom !== undefined) {
      throw new PodRunnerError(pod, `env ${e.name}: only value and secretKeyRef are supported`);
    }
  }
  return out;
}

/** Writes the pod's status the way a kubelet would for this one container. */
async function reportStatus(
  cp: ControlPlane,
  pod: V1Pod,
  container: V1Container,
  native: boolean,
  ready: boolean,
) {
  const ns = pod.metadata?.namespace ?? '';
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const cs = {
    name: container.name,
    image: container.image ?? '',
    imageID: '',
    ready,
    started: true,
    restartCount: 0,
    state: { running: { startedAt: now } },
  };
  const status = {
    phase: 'Running',
    podIP: '127.0.0.1',
    podIPs: [{ ip: '127.0.0.1' }],
    conditions: [{ type: 'Ready', status: ready ? 'True' : 'False', lastTransitionTime: now }],
    ...(native ? { initContainerStatuses: [cs] } : { containerStatuses: [cs] }),
  };
  const r = await cp.request(`/api/v1/namespaces/${ns}/pods/${pod.metadata?.name ?? ''}/status`, {
    method: 'PATCH',
    contentType: 'application/merge-patch+json',
    body: JSON.stringify({ status }),
  });
  if (r.status !== 200) throw new Error(`pod status: ${r.status} ${r.body.slice(0, 300)}`);
}

/** Runs the injected sidecar of `namespace/name` until `stop()`. */
export async function runPodSidecar(
  cp: ControlPlane,
  namespace: string,
  name: string,
  opts: PodRunnerOptions = {},
): Promise<RunningSidecar> {
  const containerName = opts.containerName ?? 'peertunnel';
  const pod = await getJson<V1Pod>(cp, `/api/v1/namespaces/${namespace}/pods/${name}`);
  const native = (pod.spec?.initContainers ?? []).some((c) => c.name === containerName);
  const container = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
    (c) => c.name === containerName,
  );
  if (container === undefined) throw new PodRunnerError(name, `has no container ${containerName}`);
  if ((container.command ?? []).length > 0 || container.args?.[0] !== 'node') {
    throw new PodRunnerError(
      name,
      `runs ${JSON.stringify([...(container.command ?? []), ...(container.args ?? [])])}, not "peertunnel node"`,
    );
  }
  const env = await resolveEnv(cp, namespace, name, container.env ?? []);
  const raw = env[CONFIG_ENV];
  if (raw === undefined) throw new PodRunnerError(name, `no ${CONFIG_ENV}`);
  const config = JSON.parse(raw) as NodeConfigInput;
  // One loopback for every "pod": own ports for each, on 127.0.0.1 only.
  config.listen = ['/ip4/127.0.0.1/tcp/0'];
  config.admin = { listen: '127.0.0.1:0' };
  delete env[CONFIG_ENV];
  const node = await startNodeProcess(config, { env });
  const admin = node.admin;
  const r = await cp.request(`/api/v1/namespaces/${namespace}/pods/${name}`, {
    method: 'PATCH',
    contentType: 'application/merge-patch+json',
    body: JSON.stringify({ metadata: { annotations: { [ADMIN_ADDRESS_ANNOTATION]: admin } } }),
  });
  if (r.status !== 200) throw new Error(`pod annotation: ${r.status} ${r.body.slice(0, 300)}`);

  // The readiness probe: /readyz, reported when it changes.
  let last: boolean | undefined;
  let stopped = false;
  const probe = async () => {
    let ready = false;
    try {
      ready = (await fetch(`http://${admin}/readyz`, { signal: AbortSignal.timeout(2_000) })).ok;
    } catch {
      ready = false;
    }
    if (ready !== last && !stopped) {
      await reportStatus(cp, pod, container, native, ready);
      last = ready;
    }
  };
  await probe();
  const timer = setInterval(() => void probe().catch(() => {}), opts.probeMs ?? 500);
  return {
    pod: name,
    node,
    admin,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await node.stop();
      // What the kubelet reports of a container that exited: not ready.
      await reportStatus(cp, pod, container, native, false).catch(() => {});
    },
  };
}
