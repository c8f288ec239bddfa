/**
 * The lab kubelet (test/env/lab-kubelet.ts) against a real API server and a NAT lab: pods created in
 * the API are bound to lab hosts and run in their network namespaces, with status, exec,
 * port-forward, env from Secrets/ConfigMaps/fields, Secret volumes at their mountPath (only inside
 * the container), an unknown image reported as ErrImagePull, and deletion that stops the
 * processes and removes the pod. Needs root and the Go-built tools (skipped loudly on a laptop,
 * failing under CI=true).
 */
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { V1Deployment, V1Node, V1Pod } from '@kubernetes/client-node';
import type { PeerNetwork } from '../../crds/schema.js';
import {
  identityKey,
  identitySecretName,
  newIdentity,
  peerIdOf,
  relaySpec,
  renderRelayConfig,
  renderRelayDeployment,
} from '../../operator/controller/relay.js';
import { ADMIN_ADDRESS_ANNOTATION } from '../../operator/controller/sidecar-client.js';
import { renderContainer, SWARM_KEY_FILE, swarmKeyVolume } from '../../operator/inject/render.js';
import { injectSettings } from '../../operator/inject/settings.js';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import type { ControlPlane } from '../env/control-plane.js';
import { type LabKubelet, startLabKubelet } from '../env/lab-kubelet.js';
import { describeWithControlPlane } from '../env/skip.js';
import { eventually, testSwarmKey } from '../helpers/node-process.js';
import { createLab, describeLab, type Lab, run } from './index.js';

const NS = 'lab-kubelet';

async function getJson<T>(cp: ControlPlane, path: string): Promise<{ status: number; value: T | undefined }> {
  const r = await cp.request(path);
  return { status: r.status, value: r.status === 200 ? (JSON.parse(r.body) as T) : undefined };
}

const podPath = (name: string) => `/api/v1/namespaces/${NS}/pods/${name}`;

/** One Redis request over a plain TCP connection: RESP in, first reply line out. */
function redisCommand(address: string, command: string): Promise<string> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const s = connect(Number(port), host ?? '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no reply from ${address} within 5 s (got ${JSON.stringify(got)})`));
    }, 5_000);
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\r\n')) {
        clearTimeout(timer);
        s.end();
        resolve(got.split('\r\n')[0] ?? '');
      }
    });
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    s.write(`${command}\r\n`);
  });
}

describeLab(
  'lab kubelet: pods of a real API server run in NAT-lab network namespaces',
  () => {
    describeWithControlPlane(
      'lab kubelet',
      (env) => {
        // A nested describe: its afterAll (the kubelet's stop) runs before the control plane's.
        describe('one cluster on two hosts of an eim site', () => {
          let lab: Lab;
          let kubelet: LabKubelet;

          beforeAll(async () => {
            lab = await createLab({ relays: 1, sites: [{ name: 'a', nat: 'eim', hosts: 2 }] });
            const { cp } = env;
            await cp.kubectlOk(['create', 'namespace', NS]);
            await cp.kubectlOk([
              '-n',
              NS,
              'create',
              'secret',
              'generic',
              'creds',
              '--from-literal=token=s3cret-token',
            ]);
            await cp.kubectlOk([
              '-n',
              NS,
              'create',
              'configmap',
              'settings',
              '--from-literal=greeting=hello-lab',
            ]);
            kubelet = await startLabKubelet({
              name: 'k',
              cp,
              lab,
              nodes: [lab.host('a', 0), lab.host('a', 1)],
            });
          }, 60_000);

          afterAll(async () => {
            await kubelet?.stop();
            await lab?.stop();
          });

          it('registers a Ready Node per lab host, with the host address', async () => {
            const nodes = (await getJson<{ items: V1Node[] }>(env.cp, '/api/v1/nodes')).value?.items ?? [];
            const mine = nodes.filter((n) => n.metadata?.labels?.['peertunnel.io/lab-cluster'] === 'k');
            expect(mine.map((n) => n.metadata?.name).sort()).toEqual(['k-a-0', 'k-a-1']);
            for (const n of mine) {
              const host = n.metadata?.name === 'k-a-0' ? lab.host('a', 0) : lab.host('a', 1);
              expect(n.status?.addresses).toContainEqual({ type: 'InternalIP', address: host.ip });
              expect(n.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
            }
          });

          it('runs a redis pod in a host namespace: status, exec, port-forward, env and a Secret volume', async () => {
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'redis', namespace: NS, labels: { app: 'redis' } },
              spec: {
                containers: [
                  {
                    name: 'redis',
                    image: 'redis:7',
                    ports: [{ name: 'redis', containerPort: 6379 }],
                    readinessProbe: { tcpSocket: { port: 'redis' }, periodSeconds: 1 },
                    env: [
                      { name: 'PLAIN', value: 'plain-value' },
                      { name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'creds', key: 'token' } } },
                      {
                        name: 'GREETING',
                        valueFrom: { configMapKeyRef: { name: 'settings', key: 'greeting' } },
                      },
                      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                      { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
                      { name: 'NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
                    ],
                    volumeMounts: [{ name: 'creds', mountPath: '/var/run/lab-creds', readOnly: true }],
                  },
                ],
                volumes: [{ name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } }],
              },
            });
            const pod = await kubelet.waitForPod(NS, (p) => p.metadata?.name === 'redis', {
              timeoutMs: 30_000,
            });
            expect(pod.host).toBe(lab.host('a', 0));

            const api = (await getJson<V1Pod>(env.cp, podPath('redis'))).value;
            expect(api?.spec?.nodeName).toBe('k-a-0');
            expect(api?.status?.phase).toBe('Running');
            expect(api?.status?.podIP).toBe(lab.host('a', 0).ip);
            expect(api?.status?.hostIP).toBe(lab.host('a', 0).ip);
            expect(api?.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
            const cs = api?.status?.containerStatuses?.[0];
            expect(cs).toEqual(expect.objectContaining({ name: 'redis', ready: true, restartCount: 0 }));
            expect(cs?.state?.running?.startedAt).toBeDefined();

            // kubectl exec: inside the pod's network namespace.
            const ping = await pod.exec('redis', ['redis-cli', 'ping']);
            expect(ping).toEqual(expect.objectContaining({ code: 0, stdout: 'PONG\n' }));
            const addr = await pod.exec('redis', ['ip', '-4', '-o', 'addr', 'show', 'eth0']);
            expect(addr.stdout).toContain(`inet ${lab.host('a', 0).ip}/`);
            // Nothing listens on 6379 in the host's own namespace, so PONG proves the namespace.
            await expect(redisCommand('127.0.0.1:6379', 'PING')).rejects.toThrow();

            // kubectl port-forward: a host port into the pod's loopback.
            const local = await pod.portForward(6379);
            expect(local).toMatch(/^127\.0\.0\.1:\d+$/);
            expect(await redisCommand(local, 'SET k lab-value')).toBe('+OK');
            expect((await pod.exec('redis', ['redis-cli', 'get', 'k'])).stdout).toBe('lab-value\n');

            // Env as a kubelet resolves it.
            const printed = await pod.exec('redis', [
              'sh',
              '-c',
              'echo "$PLAIN|$TOKEN|$GREETING|$POD_NAME|$POD_IP|$NODE"',
            ]);
            expect(printed.stdout).toBe(
              `plain-value|s3cret-token|hello-lab|redis|${lab.host('a', 0).ip}|k-a-0\n`,
            );
            // The Secret volume, at its mountPath inside the container only, with its mode, read-only.
            expect((await pod.exec('redis', ['cat', '/var/run/lab-creds/token'])).stdout).toBe(
              's3cret-token',
            );
            expect((await pod.exec('redis', ['stat', '-c', '%a', '/var/run/lab-creds/token'])).stdout).toBe(
              '400\n',
            );
            const write = await pod.exec('redis', ['sh', '-c', 'echo x > /var/run/lab-creds/new']);
            expect(write.code).not.toBe(0);
            expect(existsSync('/var/run/lab-creds')).toBe(false);
            expect(existsSync('/run/lab-creds')).toBe(false);
          });

          it('reports an unknown image as ErrImagePull, never Ready', async () => {
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'nope', namespace: NS },
              spec: { containers: [{ name: 'app', image: 'example.com/no-such-image:1.0' }] },
            });
            const status = await eventually(
              async () => {
                const p = (await getJson<V1Pod>(env.cp, podPath('nope'))).value;
                const waiting = p?.status?.containerStatuses?.[0]?.state?.waiting;
                return waiting?.reason === 'ErrImagePull' ? p?.status : undefined;
              },
              20_000,
              'ErrImagePull',
            );
            expect(status?.containerStatuses?.[0]?.state?.waiting?.message).toContain(
              'example.com/no-such-image',
            );
            expect(status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('False');
            expect(status?.phase).toBe('Pending');
            await env.cp.kubectlOk(['-n', NS, 'delete', 'pod', 'nope', '--wait=true', '--timeout=30s']);
          });

          it('restarts a crashing container with a back-off and counts it; a pod that fits nowhere is Unschedulable until a host frees', async () => {
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'crash', namespace: NS },
              spec: {
                containers: [
                  { name: 'app', image: 'debian:13', command: ['sh', '-c', 'echo crashing; exit 3'] },
                ],
              },
            });
            const crashed = await eventually(
              async () => {
                const cs = (await getJson<V1Pod>(env.cp, podPath('crash'))).value?.status
                  ?.containerStatuses?.[0];
                return (cs?.restartCount ?? 0) >= 2 ? cs : undefined;
              },
              30_000,
              'two restarts',
            );
            expect(crashed?.lastState?.terminated).toEqual(
              expect.objectContaining({ exitCode: 3, reason: 'Error' }),
            );
            expect(crashed?.ready).toBe(false);
            const crash = kubelet.pods().find((p) => p.name === 'crash');
            expect(crash?.host).toBe(lab.host('a', 1));
            expect(crash?.output('app')).toContain('crashing');

            // Both hosts taken (redis, crash): one pod per host, so this one waits.
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'stubborn', namespace: NS },
              spec: {
                terminationGracePeriodSeconds: 2,
                // Ignores SIGTERM (so does its sleep, which inherits the disposition): only SIGKILL ends it.
                containers: [
                  {
                    name: 'app',
                    image: 'debian:13',
                    command: ['sh', '-c', 'trap "" TERM; while :; do sleep 1; done'],
                  },
                ],
              },
            });
            const pending = await eventually(
              async () => {
                const p = (await getJson<V1Pod>(env.cp, podPath('stubborn'))).value;
                const c = p?.status?.conditions?.find((x) => x.type === 'PodScheduled');
                return c?.reason === 'Unschedulable' ? p : undefined;
              },
              20_000,
              'Unschedulable',
            );
            expect(pending?.spec?.nodeName ?? '').toBe('');
            expect(pending?.status?.conditions?.find((x) => x.type === 'PodScheduled')?.status).toBe('False');

            // A pod deleted at once (no grace: the kubelet never sees a deletionTimestamp) is killed all the same.
            await env.cp.kubectlOk(['-n', NS, 'delete', 'pod', 'crash', '--grace-period=0', '--force']);
            const stubborn = await kubelet.waitForPod(NS, (p) => p.metadata?.name === 'stubborn', {
              timeoutMs: 30_000,
            });
            expect(stubborn.host).toBe(lab.host('a', 1));
            expect(kubelet.pods().map((p) => p.name)).not.toContain('crash');
          });

          it('deletes a pod that ignores SIGTERM: SIGKILL after its grace period, then the object is gone', async () => {
            const pod = kubelet.pods().find((p) => p.name === 'stubborn');
            if (pod === undefined) throw new Error('stubborn is not running');
            const pidsOf = async (ns: string) => (await run('ip', ['netns', 'pids', ns])).stdout.trim();
            expect(await pidsOf(pod.host.ns)).not.toBe('');
            await env.cp.kubectlOk(['-n', NS, 'delete', 'pod', 'stubborn', '--wait=true', '--timeout=30s']);
            expect((await getJson<V1Pod>(env.cp, podPath('stubborn'))).status).toBe(404);
            expect(kubelet.pods().map((p) => p.name)).toEqual(['redis']);
            // Nothing of it is left in a/1's network namespace.
            expect(await pidsOf(pod.host.ns)).toBe('');
          });

          it('deletes a pod: stops its processes, frees the host, removes the object', async () => {
            const pod = kubelet.pods().find((p) => p.name === 'redis');
            if (pod === undefined) throw new Error('redis is not running');
            expect(await lab.pids()).not.toEqual([]);
            await env.cp.kubectlOk(['-n', NS, 'delete', 'pod', 'redis', '--wait=true', '--timeout=30s']);
            expect((await getJson<V1Pod>(env.cp, podPath('redis'))).status).toBe(404);
            expect(kubelet.pods().map((p) => p.name)).not.toContain('redis');
            const left = await lab.pids();
            expect(left).toEqual([]);
          });
        });

        describe('peertunnel pods as the operator renders them: the relay Deployment and a native sidecar', () => {
          const PT_NS = 'lab-kubelet-pt';
          let lab: Lab;
          let kubelet: LabKubelet;
          const settings = injectSettings({
            operatorNamespace: 'peertunnel-system',
            image: 'ghcr.io/peertunnel/peertunnel:0.1.0',
          });
          let relayPeer = '';

          beforeAll(async () => {
            lab = await createLab({ relays: 1, sites: [{ name: 'a', nat: 'eim', hosts: 1 }] });
            const { cp } = env;
            await cp.kubectlOk(['create', 'namespace', PT_NS]);
            await cp.kubectlOk([
              '-n',
              PT_NS,
              'create',
              'secret',
              'generic',
              'mesh-key',
              `--from-literal=swarm.key=${testSwarmKey()}`,
            ]);
            kubelet = await startLabKubelet({
              name: 'pt',
              cp,
              lab,
              nodes: [lab.relay(0), lab.host('a', 0)],
              namespaces: [PT_NS],
              // The relay belongs on the lab's internet, everything else behind the NAT.
              place: (pod, free) =>
                free.find(
                  (h) =>
                    (pod.metadata?.labels?.['app.kubernetes.io/name'] === 'peertunnel-relay') ===
                    (h.site === undefined),
                ),
            });
          }, 60_000);

          afterAll(async () => {
            await kubelet?.stop();
            await lab?.stop();
          });

          it("runs the operator's relay Deployment on the relay host: identity volume, swarm key, Ready by its probe", async () => {
            const network = {
              apiVersion: 'peertunnel.io/v1alpha1',
              kind: 'PeerNetwork',
              metadata: { name: 'mesh', namespace: PT_NS, uid: '00000000-0000-0000-0000-000000000001' },
              spec: {
                swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' },
                relay: { enabled: true, announce: [`/ip4/${lab.relay(0).ip}/tcp/4001`] },
                publicRanges: [...lab.publicRanges],
              },
            } as PeerNetwork;
            const spec = relaySpec(network);
            if (spec === undefined) throw new Error('relay not enabled');
            const identity = await newIdentity();
            relayPeer = peerIdOf(identity);
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Secret',
              metadata: { name: identitySecretName('mesh'), namespace: PT_NS },
              data: { [identityKey(0)]: identity },
            });
            const deployment: V1Deployment = renderRelayDeployment(
              network,
              spec,
              0,
              renderRelayConfig(network, spec, spec.announce, [], settings),
              settings,
            );
            // Owned by nothing here: the PeerNetwork above is not in the API.
            delete deployment.metadata?.ownerReferences;
            await env.cp.apply(deployment);

            // The controller-manager makes the ReplicaSet and the Pod; the lab kubelet runs it.
            const pod = await kubelet.waitForPod(
              PT_NS,
              (p) => p.metadata?.labels?.['app.kubernetes.io/name'] === 'peertunnel-relay',
              { timeoutMs: 60_000 },
            );
            expect(pod.host).toBe(lab.relay(0));
            expect(pod.admin).toMatch(/^127\.0\.0\.1:\d+$/);
            const api = (await getJson<V1Pod>(env.cp, `/api/v1/namespaces/${PT_NS}/pods/${pod.name}`)).value;
            expect(api?.metadata?.annotations?.[ADMIN_ADDRESS_ANNOTATION]).toBe(pod.admin);
            expect(api?.status?.podIP).toBe(lab.relay(0).ip);
            // The relay runs under the identity of the Secret volume, as the image's user.
            const status = (await (await fetch(`http://${pod.admin}/status`)).json()) as { peerId: string };
            expect(status.peerId).toBe(relayPeer);
            const id = await pod.exec('relay', ['id', '-u']);
            expect(id.stdout).toBe('65532\n');
            // The Secret's file: root's, its group the pod's fsGroup (how the relay, not root, reads it).
            const stat = await pod.exec('relay', [
              'stat',
              '-L',
              '-c',
              '%a %u %g',
              '/var/run/peertunnel/identity.key',
            ]);
            expect(stat.stdout).toBe(`440 0 ${settings.runAsGroup}\n`);
          });

          it('runs a pod with the injected native sidecar behind the NAT: it reaches the relay and turns Ready', async () => {
            const network = {
              apiVersion: 'peertunnel.io/v1alpha1',
              kind: 'PeerNetwork',
              metadata: { name: 'mesh', namespace: PT_NS },
              spec: { swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' } },
            } as PeerNetwork;
            const config: NodeConfigInput = {
              role: 'sidecar',
              swarmKey: { file: SWARM_KEY_FILE },
              listen: ['/ip4/0.0.0.0/tcp/4001'],
              bootstrap: [`/ip4/${lab.relay(0).ip}/tcp/4001/p2p/${relayPeer}`],
              publicRanges: [...lab.publicRanges],
              admin: { listen: '0.0.0.0:9090' },
            };
            const sidecar = renderContainer(config, settings);
            expect(sidecar.restartPolicy).toBe('Always');
            await env.cp.apply({
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: 'app', namespace: PT_NS, labels: { app: 'redis' } },
              spec: {
                initContainers: [sidecar],
                containers: [{ name: 'redis', image: 'redis:7' }],
                volumes: [swarmKeyVolume(network)],
              },
            });
            const pod = await kubelet.waitForPod(PT_NS, (p) => p.metadata?.name === 'app', {
              timeoutMs: 60_000,
            });
            expect(pod.host).toBe(lab.host('a', 0));
            const api = (await getJson<V1Pod>(env.cp, `/api/v1/namespaces/${PT_NS}/pods/app`)).value;
            expect(api?.status?.initContainerStatuses?.[0]).toEqual(
              expect.objectContaining({ name: 'peertunnel', ready: true, started: true }),
            );
            expect(api?.status?.containerStatuses?.[0]).toEqual(
              expect.objectContaining({ name: 'redis', ready: true }),
            );
            // /readyz needs a connection to a network peer: the relay, through the NAT router.
            const status = (await (await fetch(`http://${pod.admin}/status`)).json()) as { peerId: string };
            expect(status.peerId).toMatch(/^12D3KooW/);
            const relay = kubelet.pods().find((p) => p.host === lab.relay(0));
            const relayStatus = await (await fetch(`http://${relay?.admin}/status`)).text();
            expect(relayStatus).toContain(status.peerId);
            expect((await pod.exec('redis', ['redis-cli', 'ping'])).stdout).toBe('PONG\n');
          });
        });
      },
      // A Deployment's pods come from the real ReplicaSet controller.
      { controllerManager: true },
    );
  },
  { miniupnpd: false },
);
