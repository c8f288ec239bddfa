import { describe, expect, it } from '@jest/globals';
import { generateClusterKey } from '../../../../contracts/cluster-key.js';
import type { PeerNetwork, PeerTunnel } from '../../../../crds/schema.js';
import { renderSidecar } from '../../../../operator/inject/render.js';
import { injectSettings } from '../../../../operator/inject/settings.js';
import { CREDENTIAL_FILE, TOKEN_FILE } from '../../../../operator/inject/trust.js';
import { parseConfig } from '../../../../sidecar/config/config.js';

const KEY = generateClusterKey().publicKey;
const OTHER = generateClusterKey().publicKey;
const credentials = {
  cluster: 'a',
  publicKey: KEY,
  issuerUrl: 'https://op.sys.svc:443/credential',
  caPem: '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n',
};
const base = { operatorNamespace: 'peertunnel-system', image: 'example/peertunnel:1' };
const network: PeerNetwork = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop' },
  spec: {
    swarmKeySecretRef: { name: 'k' },
    bootstrap: ['/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn'],
    trust: { clusters: [{ name: 'b', publicKey: OTHER }], uncredentialed: ['ipfs'] },
  },
};
const tunnel: PeerTunnel = {
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name: 'db', namespace: 'shop' },
  spec: {
    networkRef: { name: 'mesh' },
    selector: { matchLabels: { app: 'db' } },
    expose: [{ name: 'db', port: 5432, allowFrom: [{ cluster: 'b', namespace: 'shop' }] }],
  },
};

describe('credentialed sidecars', () => {
  it('renders the trust section, allowFrom, the projected token and the credential volume', () => {
    const r = renderSidecar({
      tunnels: [tunnel],
      network,
      settings: injectSettings({ ...base, credentials }),
    });
    if (r.kind !== 'rendered') throw new Error(r.message);
    expect(r.config.trust).toEqual({
      network: 'shop/mesh',
      credential: {
        file: CREDENTIAL_FILE,
        issuer: { url: credentials.issuerUrl, tokenFile: TOKEN_FILE, ca: credentials.caPem },
      },
      clusters: [
        { name: 'a', publicKey: KEY },
        { name: 'b', publicKey: OTHER },
      ],
      uncredentialed: ['ipfs'],
    });
    expect(r.config.expose?.[0]?.allowFrom).toEqual([
      { cluster: 'b', namespace: 'shop', serviceAccount: '*' },
    ]);
    expect(() => parseConfig(r.config)).not.toThrow();
    expect(r.extraVolumes.map((v) => v.name)).toEqual(['peertunnel-token', 'peertunnel-credential']);
    expect(r.extraVolumes[0]?.projected?.sources?.[0]?.serviceAccountToken).toEqual({
      audience: 'peertunnel',
      expirationSeconds: 600,
      path: 'token',
    });
    expect(r.extraVolumes[1]?.emptyDir).toEqual({ medium: 'Memory', sizeLimit: '1Mi' });
    expect(r.container.volumeMounts?.map((m) => m.name)).toEqual([
      'peertunnel-swarm-key',
      'peertunnel-token',
      'peertunnel-credential',
    ]);
  });

  it('does not inject a credentialed network when the operator has no cluster name', () => {
    const r = renderSidecar({ tunnels: [tunnel], network, settings: injectSettings(base) });
    expect(r).toMatchObject({ kind: 'skipped', reason: 'NetworkNotReady' });
    expect(r.kind === 'skipped' && r.message).toContain('--cluster-name');
  });
});
