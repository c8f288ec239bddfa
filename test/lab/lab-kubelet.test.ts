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
import type { V1Node, V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { type LabKubelet, startLabKubelet } from '../env/lab-kubelet.js';
import { describeWithControlPlane } from '../env/skip.js';
import { eventually } from '../helpers/node-process.js';
import { createLab, describeLab, type Lab } from './index.js';

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
    describeWithControlPlane('lab kubelet', (env) => {
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
          expect((await pod.exec('redis', ['cat', '/var/run/lab-creds/token'])).stdout).toBe('s3cret-token');
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
    });
  },
  { miniupnpd: false },
);
