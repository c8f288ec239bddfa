/**
 * A pod runner for tests: plays the kubelet's part for one injected sidecar, on the host's loopback
 * (whole pods run on real nodes: real-node.ts). Given a pod from the API server, it resolves the
 * sidecar container's env as a kubelet would (kubelet/env.ts: values, Secret/ConfigMap keys,
 * fields), runs its command (the image's
 * entrypoint is the `peertunnel` CLI, so `args` run as `peertunnel <args>`) as a local process, and
 * reports back: pod IP, phase,
 * the sidecar's readiness (its /readyz, as the readiness probe would) in the pod's status, and where
 * its admin server listens in the `peertunnel.io/admin-address` annotation (the operator reads it
 * when started with --trust-admin-address-annotation).
 *
 * Every pod shares this host's loopback, unlike real pods: the runner rewrites the node config's
 * libp2p and admin listen addresses to 127.0.0.1 with free ports. The container's volumes (the
 * swarm key's Secret, a credentialed network's projected token and credential dir) are written to
 * a directory of its own, and config paths under a mountPath point there instead (no mount
 * namespace).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { V1ConfigMap, V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';
import { ADMIN_ADDRESS_ANNOTATION } from '../../operator/controller/sidecar-client.js';
import { CONFIG_ENV, type NodeConfigInput } from '../../sidecar/config/config.js';
import { type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import type { ControlPlane } from './control-plane.js';
import { ContainerConfigError, type ObjectSource, resolveContainerEnv } from './kubelet/env.js';
import { makeVolume, VolumeError } from './kubelet/volumes.js';

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

/** Secrets and ConfigMaps for env resolution (kubelet/env.ts), read as the admin. */
function objectSource(cp: ControlPlane): ObjectSource {
  const read = async <T>(path: string): Promise<T | undefined> => {
    const r = await cp.request(path);
    return r.status === 200 ? (JSON.parse(r.body) as T) : undefined;
  };
  return {
    secret: (ns, name) => read<V1Secret>(`/api/v1/namespaces/${ns}/secrets/${name}`),
    configMap: (ns, name) => read<V1ConfigMap>(`/api/v1/namespaces/${ns}/configmaps/${name}`),
    serviceAccountToken: async (pod, o) => {
      const r = await cp.request(
        `/api/v1/namespaces/${pod.namespace}/serviceaccounts/${pod.serviceAccount}/token`,
        {
          method: 'POST',
          contentType: 'application/json',
          body: JSON.stringify({
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenRequest',
            spec: {
              audiences: [o.audience],
              expirationSeconds: o.expirationSeconds,
              boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid },
            },
          }),
        },
      );
      if (r.status !== 201)
        throw new VolumeError(`TokenRequest for ${pod.name}: ${r.status} ${r.body.slice(0, 300)}`);
      return (JSON.parse(r.body) as { status: { token: string } }).status.token;
    },
  };
}

/** The container's env as a kubelet resolves it; every "pod" here has the host's loopback as its IP. */
async function resolveEnv(cp: ControlPlane, pod: V1Pod, container: V1Container) {
  try {
    return await resolveContainerEnv(objectSource(cp), pod, container, {
      podIP: '127.0.0.1',
      hostIP: '127.0.0.1',
    });
  } catch (err) {
    // What the kubelet reports as CreateContainerConfigError.
    if (err instanceof ContainerConfigError) throw new PodRunnerError(pod.metadata?.name ?? '', err.message);
    throw err;
  }
}

/**
 * Writes each volume the container mounts under `dir`; returns the map from a path in the
 * container to the written file (paths outside every mountPath stay as they are).
 */
async function mountVolumes(
  cp: ControlPlane,
  pod: V1Pod,
  container: V1Container,
  dir: string,
): Promise<(path: string) => string> {
  const mounts: Array<{ at: string; dir: string }> = [];
  for (const m of container.volumeMounts ?? []) {
    const volume = (pod.spec?.volumes ?? []).find((v) => v.name === m.name);
    if (volume === undefined) throw new PodRunnerError(pod.metadata?.name ?? '', `no volume ${m.name}`);
    const target = join(dir, m.name);
    try {
      await makeVolume(objectSource(cp), pod, volume, target);
    } catch (err) {
      // What the kubelet reports as a pod stuck in ContainerCreating.
      if (err instanceof VolumeError) throw new PodRunnerError(pod.metadata?.name ?? '', err.message);
      throw err;
    }
    mounts.push({ at: m.mountPath.replace(/\/+$/, ''), dir: target });
  }
  return (path) => {
    const m = mounts.find((x) => path.startsWith(`${x.at}/`));
    return m === undefined ? path : join(m.dir, path.slice(m.at.length + 1));
  };
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
  const env = await resolveEnv(cp, pod, container);
  const raw = env[CONFIG_ENV];
  if (raw === undefined) throw new PodRunnerError(name, `no ${CONFIG_ENV}`);
  const config = JSON.parse(raw) as NodeConfigInput;
  // One loopback for every "pod": own ports for each, on 127.0.0.1 only.
  config.listen = ['/ip4/127.0.0.1/tcp/0'];
  config.admin = { ...config.admin, listen: '127.0.0.1:0' };
  delete env[CONFIG_ENV];
  const volumes = await mkdtemp(join(tmpdir(), 'pt-pod-volumes-'));
  let node: NodeProcess;
  try {
    const mapped = await mountVolumes(cp, pod, container, volumes);
    if (config.swarmKey.file !== undefined) config.swarmKey = { file: mapped(config.swarmKey.file) };
    if (config.identity !== undefined) config.identity = { file: mapped(config.identity.file) };
    const cred = config.trust?.credential;
    if (cred !== undefined) {
      cred.file = mapped(cred.file);
      if (cred.issuer !== undefined) cred.issuer.tokenFile = mapped(cred.issuer.tokenFile);
    }
    node = await startNodeProcess(config, { env });
  } catch (err) {
    await rm(volumes, { recursive: true, force: true });
    throw err;
  }
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
      await rm(volumes, { recursive: true, force: true });
      // What the kubelet reports of a container that exited: not ready.
      await reportStatus(cp, pod, container, native, false).catch(() => {});
    },
  };
}
