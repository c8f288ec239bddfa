/**
 * The CRDs against a real kube-apiserver: they apply and are served, `kubectl explain` prints the
 * descriptions, the valid fixtures are accepted and each of the invalid ones is refused with a
 * message naming its field (schema and CEL rules alike).
 */
import { expect, it } from '@jest/globals';
import { describeWithControlPlane } from '../env/skip.js';
import { loadInvalidCrdFixtures, loadValidCrdFixtures } from '../unit/crds/crd-fixtures.js';
import { loadConfigCorpus, loadCorpusBases } from '../unit/sidecar/config/config-corpus.js';
import { eventually, installOperatorPrerequisites, operatorUsers } from './operator-harness.js';

const NS = 'crd-test';

describeWithControlPlane(
  'operator CRDs on a real API server',
  (env) => {
    it('apply, are established, and kubectl explain prints their descriptions', async () => {
      await installOperatorPrerequisites(env.cp);
      await env.cp.kubectlOk(['create', 'namespace', NS]);
      // The OpenAPI document follows the CRD a moment after it is Established.
      const out = await eventually('kubectl explain', () =>
        env.cp.kubectlOk(['explain', 'peertunnel.spec.forward']),
      );
      expect(out).toContain('KIND:       PeerTunnel');
      expect(out).toContain('Local ports of the selected pods that reach services exposed elsewhere.');
      expect(out).toMatch(/localPort\s+<integer> -required-/);
      expect(out).toContain('The port on 127.0.0.1 in the pod where the application connects');
      const net = await env.cp.kubectlOk(['explain', 'pnet.spec.relay.serviceType']);
      expect(net).toContain('Type of the Service in front of the relays');
      const columns = await env.cp.kubectlOk([
        'get',
        'crd',
        'peertunnels.peertunnel.io',
        '-o',
        'jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}',
      ]);
      expect(columns.split(' ')).toEqual([
        'Ready',
        'Reason',
        'Network',
        'Pods',
        'Providers',
        'Path',
        'Refused',
        'Age',
      ]);
    });

    it('accepts every valid fixture', async () => {
      for (const fx of loadValidCrdFixtures()) {
        const obj = { ...fx.object, metadata: { ...(fx.object.metadata as object), namespace: NS } };
        await expect(env.cp.apply(obj)).resolves.toBeDefined();
      }
    });

    const invalid = loadInvalidCrdFixtures();
    it('has at least the 23 invalid fixtures', () => {
      expect(invalid.length).toBeGreaterThanOrEqual(23);
    });

    it.each(invalid.map((f) => [f.file, f] as const))('refuses %s naming the field', async (_file, fx) => {
      // Straight to the API server (kubectl would refuse some of them itself, client-side).
      const plural = fx.object.kind === 'PeerTunnel' ? 'peertunnels' : 'peernetworks';
      const obj = { ...fx.object, metadata: { ...(fx.object.metadata as object), namespace: NS } };
      const res = await env.cp.request(`/apis/peertunnel.io/v1alpha1/namespaces/${NS}/${plural}`, {
        method: 'POST',
        body: JSON.stringify(obj),
      });
      expect(res.status).toBe(422);
      const status = JSON.parse(res.body) as { reason: string; message: string };
      expect(status.reason).toBe('Invalid');
      expect(status.message).toContain(fx.field);
      expect(status.message).toContain(fx.message);
    });

    // The malformed-config corpus: each value the CRDs carry is refused by the API server too,
    // naming the field, so it never reaches a rendered sidecar.
    const corpus = loadConfigCorpus().flatMap((e) => (e.crd === undefined ? [] : [[e.name, e.crd] as const]));
    it.each(corpus)('refuses corpus entry %s naming the field', async (_name, crd) => {
      const plural = crd.kind === 'PeerTunnel' ? 'peertunnels' : 'peernetworks';
      const obj = { ...crd.object, metadata: { ...(crd.object.metadata as object), namespace: NS } };
      const res = await env.cp.request(`/apis/peertunnel.io/v1alpha1/namespaces/${NS}/${plural}`, {
        method: 'POST',
        body: JSON.stringify(obj),
      });
      const status = JSON.parse(res.body) as { reason: string; message: string };
      expect({ status: res.status, reason: status.reason }).toEqual({ status: 422, reason: 'Invalid' });
      expect(status.message).toContain(crd.field);
    });

    it('accepts the bases the corpus entries are built on', async () => {
      for (const base of loadCorpusBases()) {
        const obj = { ...base.object, metadata: { ...(base.object.metadata as object), namespace: NS } };
        await expect(env.cp.apply(obj)).resolves.toBeDefined();
      }
    });
  },
  { users: operatorUsers },
);
