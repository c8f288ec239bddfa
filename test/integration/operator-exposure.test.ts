/**
 * Exposure by whoever may create a PeerTunnel, against a real API server and operator: a tunnel
 * exposing a non-loopback host (the API server's Service IP) is accepted by the CRD but refused by
 * the operator (Ready=False, RemoteExposeNotAllowed, and its pods get no sidecar) unless the
 * operator's allowRemoteExposeNamespaces lists the namespace; link-local hosts and empty selectors
 * never get past the API server.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { describeWithControlPlane } from '../env/skip.js';
import { testSwarmKey } from '../helpers/node-process.js';
import {
  freePort,
  getJson,
  installOperatorPrerequisites,
  type OperatorProcess,
  operatorUsers,
  readyOf,
  startOperator,
  waitForReason,
} from './operator-harness.js';

const REFUSED = 'expose-no';
const ALLOWED = 'expose-ok';
const KEY = testSwarmKey();

const network = (ns: string) => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: ns },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    bootstrap: ['/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
  },
});
const tunnel = (ns: string, host: string, selector: object = { matchLabels: { app: 'kapi' } }) => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name: 'kapi', namespace: ns },
  spec: { networkRef: { name: 'mesh' }, selector, expose: [{ name: 'kube-api', port: 443, host }] },
});
const pod = (ns: string): V1Pod => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'kapi-0', namespace: ns, labels: { app: 'kapi' } },
  spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
});

async function create(cp: ControlPlane, obj: object): Promise<void> {
  await cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(obj) });
}

describeWithControlPlane(
  'who may expose what',
  (env) => {
    let op: OperatorProcess;

    beforeAll(async () => {
      await installOperatorPrerequisites(env.cp);
      op = await startOperator(env.cp, {
        identity: 'op-exposure',
        webhookPort: await freePort(),
        extraArgs: [`--allow-remote-expose-namespaces=${ALLOWED}`],
      });
      for (const ns of [REFUSED, ALLOWED]) {
        await env.cp.kubectlOk(['create', 'namespace', ns]);
        await env.cp.kubectlOk([
          '-n',
          ns,
          'create',
          'secret',
          'generic',
          'mesh-key',
          `--from-literal=swarm.key=${KEY}`,
        ]);
        await create(env.cp, network(ns));
      }
    }, 120_000);

    afterAll(async () => {
      await op?.stop();
    });

    it('refuses a remote expose host where the namespace is not allowed, says why, injects no pod', async () => {
      await create(env.cp, tunnel(REFUSED, '10.96.0.1'));
      const t = await waitForReason(env.cp, 'peertunnel/kapi', REFUSED, 'RemoteExposeNotAllowed');
      expect(readyOf(t)?.status).toBe('False');
      expect(readyOf(t)?.message).toContain('spec.expose[0].host 10.96.0.1');
      expect(readyOf(t)?.message).toContain('allowRemoteExposeNamespaces');
      await create(env.cp, pod(REFUSED));
      const p = await getJson<V1Pod>(env.cp, ['-n', REFUSED, 'get', 'pod', 'kapi-0']);
      const names = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].map((c) => c.name);
      expect(names).toEqual(['app']);
    });

    it('injects the same tunnel where the operator allows the namespace', async () => {
      await create(env.cp, tunnel(ALLOWED, '10.96.0.1'));
      await create(env.cp, pod(ALLOWED));
      const p = await getJson<V1Pod>(env.cp, ['-n', ALLOWED, 'get', 'pod', 'kapi-0']);
      const names = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].map((c) => c.name);
      expect(names).toContain('peertunnel');
      const t = await waitForReason(env.cp, 'peertunnel/kapi', ALLOWED, 'SidecarsNotReady');
      expect(readyOf(t)?.status).toBe('False');
    });

    it.each([
      ['the cloud metadata address', '169.254.169.254', undefined, 'spec.expose[0].host'],
      ['an empty selector', '127.0.0.1', {}, 'spec.selector'],
    ])(
      'refuses %s at the API server, even where remote hosts are allowed',
      async (_what, host, selector, field) => {
        const obj = { ...tunnel(ALLOWED, host, selector), metadata: { name: 'never', namespace: ALLOWED } };
        const res = await env.cp.request(`/apis/peertunnel.io/v1alpha1/namespaces/${ALLOWED}/peertunnels`, {
          method: 'POST',
          body: JSON.stringify(obj),
        });
        expect(res.status).toBe(422);
        expect((JSON.parse(res.body) as { message: string }).message).toContain(field);
      },
    );
  },
  { users: operatorUsers },
);
