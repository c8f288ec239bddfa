/**
 * PeerNetwork relays against a real API server: with spec.relay.enabled the operator creates the
 * relay's identity Secret, Service and Deployment and publishes the relay's address (with the
 * peer ID of the stored identity) in status.relayAddresses. The relay pod then runs: there is no
 * controller-manager here, so the test creates the Pod from the Deployment's template itself, and
 * the pod runner runs its container as a kubelet would (the identity Secret's volume materialised
 * into a temp dir, the swarm key from its Secret). A sidecar bootstraps to it under the published
 * peer ID, and the relay's /status lists the sidecar. A restarted operator keeps the identity.
 */
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Container, V1Deployment, V1Pod, V1Secret, V1Service } from '@kubernetes/client-node';
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { SWARM_KEY_DIR, SWARM_KEY_FILE, SWARM_KEY_VOLUME } from '../../operator/inject/render.js';
import { CONFIG_ENV, type NodeConfigInput } from '../../sidecar/config/config.js';
import type { ControlPlane } from '../env/control-plane.js';
import { type RunningSidecar, runPodSidecar } from '../env/pod-runner.js';
import { describeWithControlPlane } from '../env/skip.js';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';
import {
  eventually,
  freePort,
  getJson,
  IMAGE,
  installOperatorPrerequisites,
  type ObjWithStatus,
  type OperatorProcess,
  operatorUsers,
  readyOf,
  startOperator,
  waitForReason,
} from './operator-harness.js';

const NS = 'relay-test';
const KEY = testSwarmKey();
const SIDECAR_KEY_ENV = 'PEERTUNNEL_TEST_SIDECAR_KEY';

interface NetworkWithStatus extends ObjWithStatus {
  status?: ObjWithStatus['status'] & { relayAddresses?: string[] };
}

const network = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: NS },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    // ClusterIP: there is no load balancer controller here to give a LoadBalancer an address.
    relay: { enabled: true, serviceType: 'ClusterIP' },
  },
};

const get = <T>(cp: ControlPlane, ...args: string[]) => getJson<T>(cp, ['-n', NS, 'get', ...args]);

/**
 * What a kubelet does with the container's secret volumes: writes the Secret's items into a
 * directory per mount. The pod runner shares this host's file system, so the config's file paths
 * under a mount are rewritten to the materialised directory.
 */
async function mountSecretVolumes(
  cp: ControlPlane,
  spec: NonNullable<V1Pod['spec']>,
  container: V1Container,
  root: string,
): Promise<(path: string) => string> {
  const mounts: Array<[string, string]> = [];
  for (const m of container.volumeMounts ?? []) {
    const vol = (spec.volumes ?? []).find((v) => v.name === m.name);
    if (vol?.secret?.secretName === undefined) throw new Error(`volume ${m.name} is not a secret volume`);
    const secret = await get<V1Secret>(cp, 'secret', vol.secret.secretName);
    const dir = join(root, m.name);
    await mkdir(dir, { recursive: true });
    for (const item of vol.secret.items ?? []) {
      const data = secret.data?.[item.key];
      if (data === undefined) throw new Error(`secret ${vol.secret.secretName} has no key ${item.key}`);
      await writeFile(join(dir, item.path), Buffer.from(data, 'base64'), {
        mode: vol.secret.defaultMode ?? 0o644,
      });
    }
    mounts.push([m.mountPath, dir]);
  }
  return (path) => {
    for (const [from, to] of mounts) if (path.startsWith(`${from}/`)) return to + path.slice(from.length);
    return path;
  };
}

/** TCP ports a process listens on, from /proc (its socket inodes in /proc/net/tcp, state LISTEN). */
async function listeningPorts(pid: number): Promise<number[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''));
    if (m?.[1] !== undefined) inodes.add(m[1]);
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const text = await readFile(table, 'utf8').catch(() => '');
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const [local, , state, , , , , , inode] = f.slice(1);
      if (state === '0A' && inode !== undefined && inodes.has(inode))
        ports.push(Number.parseInt(local?.split(':')[1] ?? '0', 16));
    }
  }
  return [...new Set(ports)];
}

describeWithControlPlane(
  'operator relays: Deployment, Service and identity, addresses in status, a sidecar bootstraps',
  (env) => {
    let op: OperatorProcess;
    let port = 0;
    let relay: RunningSidecar | undefined;
    let sidecar: NodeProcess | undefined;
    let dir = '';

    beforeAll(async () => {
      const { cp } = env;
      dir = await mkdtemp(join(tmpdir(), 'pt-relay-test-'));
      await installOperatorPrerequisites(cp);
      port = await freePort();
      op = await startOperator(cp, { identity: 'op-relay', webhookPort: port });
      await cp.kubectlOk(['create', 'namespace', NS]);
      await cp.kubectlOk([
        '-n',
        NS,
        'create',
        'secret',
        'generic',
        'mesh-key',
        `--from-literal=swarm.key=${KEY}`,
      ]);
      await cp.apply([network]);
    }, 120_000);

    afterAll(async () => {
      await sidecar?.stop();
      await relay?.stop();
      await op?.stop();
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    });

    it('creates the identity Secret, Service and Deployment, and publishes the address', async () => {
      const net = await waitForReason(env.cp, 'peernetwork/mesh', NS, 'Ready');
      const addrs = (net as NetworkWithStatus).status?.relayAddresses ?? [];
      expect(addrs).toHaveLength(1);

      // The identity: a protobuf Ed25519 private key whose peer ID is the published one.
      const secret = await get<V1Secret>(env.cp, 'secret', 'mesh-relay-identity');
      expect(Object.keys(secret.data ?? {})).toEqual(['identity-0']);
      const key = privateKeyFromProtobuf(Buffer.from(secret.data?.['identity-0'] ?? '', 'base64'));
      expect(key.type).toBe('Ed25519');
      const peerId = peerIdFromPrivateKey(key).toString();
      expect(peerId).toMatch(/^12D3KooW/);

      const svc = await get<V1Service>(env.cp, 'service', 'mesh-relay-0');
      expect(svc.spec?.type).toBe('ClusterIP');
      expect(svc.spec?.ports).toEqual([
        expect.objectContaining({ name: 'pt-p2p', port: 4001, targetPort: 'pt-p2p', protocol: 'TCP' }),
      ]);
      const clusterIP = svc.spec?.clusterIP ?? '';
      expect(clusterIP).not.toBe('');
      expect(addrs).toEqual([`/ip4/${clusterIP}/tcp/4001/p2p/${peerId}`]);
      expect(readyOf(net)?.message).toContain('1 of 1 operator-run relays');

      const uid = (await get<ObjWithStatus>(env.cp, 'peernetwork', 'mesh')).metadata.uid;
      for (const o of [secret, svc]) {
        expect(o.metadata?.ownerReferences).toEqual([
          expect.objectContaining({ kind: 'PeerNetwork', name: 'mesh', uid, controller: true }),
        ]);
      }

      const dep = await get<V1Deployment>(env.cp, 'deployment', 'mesh-relay-0');
      expect(dep.spec?.replicas).toBe(1);
      expect(dep.spec?.strategy?.type).toBe('Recreate');
      expect(dep.metadata?.ownerReferences?.[0]?.uid).toBe(uid);
      const tpl = dep.spec?.template;
      expect(svc.spec?.selector).toEqual(tpl?.metadata?.labels);
      expect(tpl?.metadata?.annotations?.['peertunnel.io/inject']).toBe('false');
      const c = tpl?.spec?.containers[0];
      expect(tpl?.spec?.containers).toHaveLength(1);
      expect(c?.image).toBe(IMAGE);
      expect(c?.command ?? []).toEqual([]);
      expect(c?.args).toEqual(['node']);
      expect(c?.ports).toEqual([
        expect.objectContaining({ name: 'pt-p2p', containerPort: 4001, protocol: 'TCP' }),
        expect.objectContaining({ name: 'pt-admin', containerPort: 9090, protocol: 'TCP' }),
      ]);
      // The swarm key is a read-only file from the network's Secret, never an env var.
      expect(c?.env?.some((e) => e.valueFrom?.secretKeyRef !== undefined)).toBe(false);
      const config = JSON.parse(c?.env?.find((e) => e.name === CONFIG_ENV)?.value ?? '{}') as NodeConfigInput;
      expect(config).toEqual(
        expect.objectContaining({
          role: 'relay',
          swarmKey: { file: SWARM_KEY_FILE },
          identity: { file: '/var/run/peertunnel/identity.key' },
          listen: ['/ip4/0.0.0.0/tcp/4001'],
          announce: [`/ip4/${clusterIP}/tcp/4001`],
          bootstrap: [],
        }),
      );
      expect(c?.volumeMounts).toEqual([
        expect.objectContaining({ name: 'identity', mountPath: '/var/run/peertunnel', readOnly: true }),
        expect.objectContaining({ name: SWARM_KEY_VOLUME, mountPath: SWARM_KEY_DIR, readOnly: true }),
      ]);
      expect(tpl?.spec?.volumes).toEqual([
        expect.objectContaining({
          name: SWARM_KEY_VOLUME,
          secret: expect.objectContaining({
            secretName: 'mesh-key',
            items: [{ key: 'swarm.key', path: 'swarm.key' }],
          }),
        }),
        expect.objectContaining({
          name: 'identity',
          secret: expect.objectContaining({
            secretName: 'mesh-relay-identity',
            items: [{ key: 'identity-0', path: 'identity.key' }],
          }),
        }),
      ]);
      expect(c?.securityContext).toEqual(
        expect.objectContaining({ allowPrivilegeEscalation: false, runAsNonRoot: true }),
      );
    });

    it('runs the relay pod, and a sidecar bootstraps to it under the published peer ID', async () => {
      const dep = await get<V1Deployment>(env.cp, 'deployment', 'mesh-relay-0');
      const tpl = dep.spec?.template;
      const spec = tpl?.spec;
      const container = spec?.containers[0];
      if (spec === undefined || container === undefined) throw new Error('no pod template');
      // The kubelet's part: the identity volume, then the pod (as the ReplicaSet would create it).
      const rewrite = await mountSecretVolumes(env.cp, spec, container, dir);
      const env0 = container.env ?? [];
      const config = JSON.parse(env0.find((e) => e.name === CONFIG_ENV)?.value ?? '{}') as NodeConfigInput;
      if (config.identity !== undefined) config.identity = { file: rewrite(config.identity.file) };
      const keyFile =
        config.swarmKey !== undefined && 'file' in config.swarmKey ? config.swarmKey.file : undefined;
      if (keyFile !== undefined) config.swarmKey = { file: rewrite(keyFile) };
      const podEnv = env0.map((e) => (e.name === CONFIG_ENV ? { ...e, value: JSON.stringify(config) } : e));
      await env.cp.apply([
        {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { ...tpl?.metadata, name: 'mesh-relay-0-abc12', namespace: NS },
          spec: { ...spec, containers: [{ ...container, env: podEnv }] },
        },
      ]);
      // The webhook leaves the relay alone.
      const pod = await get<V1Pod>(env.cp, 'pod', 'mesh-relay-0-abc12');
      expect(pod.spec?.containers.map((c) => c.name)).toEqual(['relay']);
      expect(pod.spec?.initContainers ?? []).toEqual([]);

      relay = await runPodSidecar(env.cp, NS, 'mesh-relay-0-abc12', { containerName: 'relay' });
      const net = await get<NetworkWithStatus>(env.cp, 'peernetwork', 'mesh');
      const published = net.status?.relayAddresses?.[0] ?? '';
      const peerId = published.slice(published.lastIndexOf('/p2p/') + 5);
      // It runs with the stored identity.
      expect(relay.node.peerId).toBe(peerId);
      const relayStatus = await relay.node.status();
      expect(relayStatus.role).toBe('relay');

      // The pod runner makes it listen on loopback (its announced address stays the ClusterIP's,
      // unreachable here): dial that port under the published peer ID.
      const ports = (await listeningPorts(relay.node.proc.pid ?? -1)).filter(
        (p) => p !== relay?.node.adminPort,
      );
      expect(ports).toHaveLength(1);
      const bootstrap = `/ip4/127.0.0.1/tcp/${ports[0]}/p2p/${peerId}`;
      sidecar = await startNodeProcess(
        {
          swarmKey: { env: SIDECAR_KEY_ENV },
          listen: ['/ip4/127.0.0.1/tcp/0'],
          bootstrap: [bootstrap],
        },
        { env: { [SIDECAR_KEY_ENV]: KEY } },
      );
      const sidecarId = sidecar.peerId;
      await eventually(
        'the relay to list the sidecar and the sidecar to be ready',
        async () => {
          const [r, s] = await Promise.all([relay?.node.status(), sidecar?.status()]);
          const seen = r?.peers.some((p) => p.peer === sidecarId) === true;
          const back = s?.peers.some((p) => p.peer === peerId) === true;
          return seen && back && s?.ready === true ? true : undefined;
        },
        30_000,
      );
      // The pod runner probes /readyz (a node with no peer is not ready): ready now it has one.
      await eventually('the relay pod to be ready', async () => {
        const p = await get<V1Pod>(env.cp, 'pod', 'mesh-relay-0-abc12');
        return p.status?.containerStatuses?.[0]?.ready === true ? true : undefined;
      });
    });

    it("gives the relay's address to the network's injected sidecars as their bootstrap peer", async () => {
      await env.cp.apply([
        {
          apiVersion: 'peertunnel.io/v1alpha1',
          kind: 'PeerTunnel',
          metadata: { name: 'db', namespace: NS },
          spec: {
            networkRef: { name: 'mesh' },
            selector: { matchLabels: { app: 'db' } },
            expose: [{ name: 'db', port: 5432 }],
          },
        },
      ]);
      await waitForReason(env.cp, 'peertunnel/db', NS, 'NoPodsSelected');
      await env.cp.kubectlOk(['create', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'db-0', namespace: NS, labels: { app: 'db' } },
          spec: { containers: [{ name: 'app', image: 'example/db:1' }] },
        }),
      });
      const pod = await get<V1Pod>(env.cp, 'pod', 'db-0');
      const c = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
        (x) => x.name === 'peertunnel',
      );
      const config = JSON.parse(c?.env?.find((e) => e.name === CONFIG_ENV)?.value ?? '{}') as NodeConfigInput;
      const net = await get<NetworkWithStatus>(env.cp, 'peernetwork', 'mesh');
      expect(config.bootstrap).toEqual(net.status?.relayAddresses);
    });

    it('a restarted operator keeps the identity and changes nothing', async () => {
      const rv = async () => {
        const out: Record<string, string> = {};
        for (const r of ['secret/mesh-relay-identity', 'service/mesh-relay-0', 'deployment/mesh-relay-0']) {
          out[r] = (await get<ObjWithStatus>(env.cp, r)).metadata.resourceVersion;
        }
        return out;
      };
      const before = await rv();
      const secretBefore = (await get<V1Secret>(env.cp, 'secret', 'mesh-relay-identity')).data;
      const addrsBefore = (await get<NetworkWithStatus>(env.cp, 'peernetwork', 'mesh')).status
        ?.relayAddresses;

      await op.stop();
      op = await startOperator(env.cp, { identity: 'op-relay-2', webhookPort: port });
      await eventually('the new operator to reconcile the network', async () => {
        const n = await op.metric('peertunnel_operator_reconciles_total', {
          kind: 'PeerNetwork',
          result: 'success',
        });
        return n >= 1 ? true : undefined;
      });
      expect(await op.metric('peertunnel_operator_status_writes_total')).toBe(0);
      expect((await get<V1Secret>(env.cp, 'secret', 'mesh-relay-identity')).data).toEqual(secretBefore);
      expect((await get<NetworkWithStatus>(env.cp, 'peernetwork', 'mesh')).status?.relayAddresses).toEqual(
        addrsBefore,
      );
      expect(await rv()).toEqual(before);
      // The running relay is still the one the network publishes.
      expect(addrsBefore?.[0]).toContain(`/p2p/${relay?.node.peerId ?? '?'}`);
    });
  },
  { users: operatorUsers },
);
