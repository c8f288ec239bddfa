/**
 * The test environment itself: a real etcd + kube-apiserver answer kubectl, serve CRDs with their
 * descriptions to `kubectl explain`, enforce RBAC and refuse unknown tokens.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { expect, it } from '@jest/globals';
import { type ControlPlane, serviceAccountUser } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';

const ns = 'cp-test';

const widgetCrd = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: 'widgets.envtest.peertunnel.io' },
  spec: {
    group: 'envtest.peertunnel.io',
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                description: 'What the widget should be.',
                properties: {
                  size: {
                    type: 'integer',
                    minimum: 1,
                    description: 'How many sprockets the widget carries.',
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

/** Retries `fn` until it returns a value, for things the API server publishes asynchronously. */
async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(250);
  }
}

async function getJson(cp: ControlPlane, args: string[]): Promise<Record<string, unknown>> {
  return JSON.parse(await cp.kubectlOk([...args, '-o', 'json'])) as Record<string, unknown>;
}

describeWithControlPlane(
  'test control plane (real kube-apiserver + etcd)',
  (env) => {
    it('reports its real version (new enough for native sidecars)', async () => {
      const v = (await getJson(env.cp, ['version'])) as {
        serverVersion?: { gitVersion?: string; minor?: string };
      };
      expect(v.serverVersion?.gitVersion).toMatch(/^v1\.\d+\.\d+$/);
      expect(Number.parseInt(v.serverVersion?.minor ?? '0', 10)).toBeGreaterThanOrEqual(33);
    });

    it('stores and returns a namespace and a ConfigMap', async () => {
      const { cp } = env;
      await cp.kubectlOk(['create', 'namespace', ns]);
      await cp.kubectlOk(['-n', ns, 'create', 'configmap', 'greeting', '--from-literal=hello=world']);
      // And through stdin, the way tests will apply rendered manifests.
      const applied = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'applied', namespace: ns, labels: { app: 'cp-test' } },
        data: { answer: '42' },
      };
      await cp.apply(applied);

      const nsObj = (await getJson(cp, ['get', 'namespace', ns])) as { status?: { phase?: string } };
      expect(nsObj.status?.phase).toBe('Active');
      const greeting = (await getJson(cp, ['-n', ns, 'get', 'configmap', 'greeting'])) as {
        data?: Record<string, string>;
      };
      expect(greeting.data).toEqual({ hello: 'world' });
      const list = (await getJson(cp, ['-n', ns, 'get', 'configmaps', '-l', 'app=cp-test'])) as {
        items: { metadata: { name: string }; data?: Record<string, string> }[];
      };
      expect(list.items.map((i) => [i.metadata.name, i.data])).toEqual([['applied', { answer: '42' }]]);
    });

    it('sends a DELETE with a body (DeleteOptions) and the next request on the connection still works', async () => {
      const { cp } = env;
      await cp.kubectlOk(['-n', ns, 'create', 'configmap', 'doomed', '--from-literal=a=b']);
      const del = await cp.request(`/api/v1/namespaces/${ns}/configmaps/doomed`, {
        method: 'DELETE',
        body: JSON.stringify({ kind: 'DeleteOptions', apiVersion: 'v1', gracePeriodSeconds: 0 }),
      });
      expect(del.status).toBe(200);
      // Without a Content-Length the body was read as the start of this request: a bare 400.
      const after = await cp.request(`/api/v1/namespaces/${ns}/configmaps/doomed`);
      expect(after.status).toBe(404);
    });

    it('accepts a pod without a service account controller, and leaves it Pending', async () => {
      const { cp } = env;
      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'idle', namespace: ns },
        spec: { containers: [{ name: 'main', image: 'example.invalid/idle:1' }] },
      };
      await cp.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(pod) });
      const got = (await getJson(cp, ['-n', ns, 'get', 'pod', 'idle'])) as { status?: { phase?: string } };
      expect(got.status?.phase).toBe('Pending');
    });

    it('serves a CRD and its field descriptions to kubectl explain', async () => {
      const { cp } = env;
      await cp.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(widgetCrd) });
      await cp.kubectlOk([
        'wait',
        '--for=condition=Established',
        '--timeout=30s',
        `crd/${widgetCrd.metadata.name}`,
      ]);
      // The OpenAPI document for a new CRD is published a moment after it is Established.
      const explained = await eventually(async () => {
        const r = await cp.kubectl(['explain', 'widgets.spec.size']);
        return r.code === 0 && r.stdout.includes('How many sprockets') ? r.stdout : undefined;
      });
      expect(explained).toContain('How many sprockets the widget carries.');

      await cp.kubectlOk(['apply', '-f', '-'], {
        input: JSON.stringify({
          apiVersion: 'envtest.peertunnel.io/v1',
          kind: 'Widget',
          metadata: { name: 'w', namespace: ns },
          spec: { size: 3 },
        }),
      });
      const w = (await getJson(cp, ['-n', ns, 'get', 'widget', 'w'])) as { spec?: { size?: number } };
      expect(w.spec?.size).toBe(3);
      // The schema is enforced by the server, not by kubectl.
      const bad = {
        apiVersion: 'envtest.peertunnel.io/v1',
        kind: 'Widget',
        metadata: { name: 'bad', namespace: ns },
      };
      await expect(cp.apply({ ...bad, spec: { size: 0 } })).rejects.toMatchObject({
        name: 'CommandFailedError',
        stderr: expect.stringContaining('spec.size'),
      });
    });

    it('refuses an unknown token (401) and a user without RBAC grants (403)', async () => {
      const { cp } = env;
      const path = `/api/v1/namespaces/${ns}/configmaps`;
      expect((await cp.request(path, { token: 'not-a-real-token' })).status).toBe(401);
      const nobody = cp.users.nobody;
      expect(nobody).toBeDefined();
      const token = nobody?.token ?? '';
      expect((await cp.request(path, { token })).status).toBe(403);
      const who = JSON.parse(await cp.kubectlOk(['auth', 'whoami', '-o', 'json'], { token })) as {
        status?: { userInfo?: { username?: string; groups?: string[] } };
      };
      expect(who.status?.userInfo).toMatchObject({ username: 'nobody', groups: ['system:authenticated'] });
      const viaKubectl = await cp.kubectl(['-n', ns, 'get', 'configmaps'], { token });
      expect(viaKubectl.code).not.toBe(0);
      expect(viaKubectl.stderr).toContain('forbidden');

      // RBAC is what decides: a RoleBinding opens exactly that door.
      await cp.kubectlOk([
        '-n',
        ns,
        'create',
        'role',
        'cm-reader',
        '--verb=get,list',
        '--resource=configmaps',
      ]);
      await cp.kubectlOk([
        '-n',
        ns,
        'create',
        'rolebinding',
        'cm-reader',
        '--role=cm-reader',
        '--user=nobody',
      ]);
      expect((await cp.request(path, { token })).status).toBe(200);
      expect((await cp.request(`/api/v1/namespaces/${ns}/secrets`, { token })).status).toBe(403);
    });

    it('authenticates service accounts, by static token and by TokenRequest', async () => {
      const { cp } = env;
      const whoami = async (token: string): Promise<string | undefined> => {
        const out = JSON.parse(await cp.kubectlOk(['auth', 'whoami', '-o', 'json'], { token })) as {
          status?: { userInfo?: { username?: string; groups?: string[] } };
        };
        return out.status?.userInfo?.username;
      };
      expect(await whoami(cp.users.operator?.token ?? '')).toBe(
        'system:serviceaccount:peertunnel-system:peertunnel',
      );

      await cp.kubectlOk(['-n', ns, 'create', 'serviceaccount', 'robot']);
      const saToken = await cp.serviceAccountToken(ns, 'robot');
      expect(await whoami(saToken)).toBe(`system:serviceaccount:${ns}:robot`);
      // A kubeconfig of its own, as the operator process would get.
      const kc = await cp.kubeconfigFor(saToken, { namespace: ns });
      const r = await cp.kubectl([`--kubeconfig=${kc}`, 'get', 'configmaps']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('forbidden');
    });

    it('has a helm that reaches the API server', async () => {
      const { cp } = env;
      const v = await cp.helm(['version', '--short']);
      expect(v.code).toBe(0);
      expect(v.stdout).toMatch(/^v3\./);
      const ls = await cp.helm(['list', '-n', ns, '-o', 'json']);
      expect(ls.stderr).toBe('');
      expect(JSON.parse(ls.stdout)).toEqual([]);
    });
  },
  {
    users: {
      nobody: { name: 'nobody' },
      operator: serviceAccountUser('peertunnel-system', 'peertunnel'),
    },
  },
);
