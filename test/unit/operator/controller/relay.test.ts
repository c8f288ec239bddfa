/**
 * The relay Deployment as the operator renders it: its pod must be able to read its own identity
 * (a Secret volume, files root's and 0440) as the image's non-root user, which takes fsGroup.
 */
import { describe, expect, it } from '@jest/globals';
import type { PeerNetwork } from '../../../../crds/schema.js';
import {
  relaySpec,
  renderRelayConfig,
  renderRelayDeployment,
  renderRelayService,
} from '../../../../operator/controller/relay.js';
import { injectSettings } from '../../../../operator/inject/settings.js';

const settings = injectSettings({
  operatorNamespace: 'peertunnel-system',
  image: 'ghcr.io/peertunnel/peertunnel:0.1.0',
});
const network = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop', uid: 'u-1' },
  spec: {
    swarmKeySecretRef: { name: 'mesh-key' },
    relay: { enabled: true, announce: ['/ip4/203.0.113.10/tcp/4001'] },
  },
} as PeerNetwork;

describe('renderRelayDeployment', () => {
  it('lets the non-root relay read its 0440 identity file: fsGroup is the container group', () => {
    const spec = relaySpec(network);
    if (spec === undefined) throw new Error('relay not enabled');
    const dep = renderRelayDeployment(
      network,
      spec,
      0,
      renderRelayConfig(network, spec, spec.announce, [], settings),
      settings,
    );
    const pod = dep.spec?.template.spec;
    const container = pod?.containers[0];
    const volume = pod?.volumes?.find((v) => v.name === 'identity');
    expect(volume?.secret?.defaultMode).toBe(0o440);
    expect(container?.securityContext?.runAsUser).not.toBe(0);
    expect(pod?.securityContext?.fsGroup).toBe(container?.securityContext?.runAsGroup);
  });
});

describe('renderRelayService', () => {
  const withType = (serviceType: 'ClusterIP' | 'NodePort' | 'LoadBalancer') => {
    const n = { ...network, spec: { ...network.spec, relay: { enabled: true, serviceType } } } as PeerNetwork;
    const spec = relaySpec(n);
    if (spec === undefined) throw new Error('relay not enabled');
    return renderRelayService(n, spec, 0).spec;
  };
  it("keeps peers' own addresses from outside the cluster: externalTrafficPolicy Local", () => {
    expect(withType('LoadBalancer')?.externalTrafficPolicy).toBe('Local');
    expect(withType('NodePort')?.externalTrafficPolicy).toBe('Local');
    // Not a field of a ClusterIP Service (the API server refuses it there).
    expect(withType('ClusterIP')?.externalTrafficPolicy).toBeUndefined();
  });
});
