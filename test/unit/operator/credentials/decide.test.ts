import { describe, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel } from '../../../../crds/schema.js';
import {
  decideCredential,
  type IssueFacts,
  identityOf,
  POD_NAME_EXTRA,
  POD_UID_EXTRA,
} from '../../../../operator/credentials/decide.js';

const PEER = '12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';
const id = { namespace: 'shop', serviceAccount: 'db', pod: 'db-0', podUid: 'u1' };
const pod = (over: Partial<V1Pod['metadata']> = {}, sa = 'db'): V1Pod => ({
  metadata: { name: 'db-0', namespace: 'shop', uid: 'u1', labels: { app: 'db' }, ...over },
  spec: { serviceAccountName: sa, containers: [] },
});
const network = (trust: PeerNetwork['spec']['trust'] | null = { credentialTTLSeconds: 60 }): PeerNetwork => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name: 'mesh', namespace: 'shop' },
  spec: {
    swarmKeySecretRef: { name: 'k' },
    bootstrap: ['/ip4/127.0.0.1/tcp/1'],
    ...(trust ? { trust } : {}),
  },
});
const tunnel = (name: string, app: string, expose: string[], net = 'mesh'): PeerTunnel => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerTunnel',
  metadata: { name, namespace: 'shop' },
  spec: {
    networkRef: { name: net },
    selector: { matchLabels: { app } },
    expose: expose.map((n, i) => ({ name: n, port: 1000 + i })),
  },
});
const facts = (over: Partial<IssueFacts> = {}): IssueFacts => ({
  identity: id,
  pod: pod(),
  tunnels: [
    tunnel('a', 'db', ['db', 'metrics']),
    tunnel('b', 'db', ['db', 'admin']),
    tunnel('c', 'web', ['web']),
  ],
  networks: [network()],
  peer: PEER,
  cluster: 'a',
  allowRemoteExposeNamespaces: [],
  nowSeconds: 1000.7,
  ...over,
});

describe('identityOf (TokenReview status)', () => {
  const user = {
    username: 'system:serviceaccount:shop:db',
    extra: { [POD_NAME_EXTRA]: ['db-0'], [POD_UID_EXTRA]: ['u1'] },
  };
  it('reads the namespace, ServiceAccount and bound pod', () => {
    expect(identityOf({ authenticated: true, user, audiences: ['peertunnel'] }, 'peertunnel')).toEqual(id);
  });
  it.each([
    [{ authenticated: false, error: 'token expired' }, 'token_invalid'],
    [{ authenticated: true, user, audiences: ['other'] }, 'token_invalid'],
    [{ authenticated: true, user: { ...user, username: 'alice' } }, 'not_a_pod_token'],
    [{ authenticated: true, user: { username: user.username } }, 'not_a_pod_token'],
  ])('refuses %j: %s', (review, reason) => {
    expect(identityOf(review, 'peertunnel')).toMatchObject({ kind: 'refused', reason });
  });
});

describe('decideCredential', () => {
  it('binds the peer to the namespace, ServiceAccount and the union of the selecting tunnels’ exposes', () => {
    expect(decideCredential(facts())).toEqual({
      kind: 'issue',
      claims: {
        v: 1,
        network: 'shop/mesh',
        cluster: 'a',
        namespace: 'shop',
        serviceAccount: 'db',
        peer: PEER,
        expose: ['admin', 'db', 'metrics'],
        notBefore: 1000,
        expires: 1060,
      },
    });
  });
  it('uses spec.trust.network when set', () => {
    const d = decideCredential(facts({ networks: [network({ network: 'mesh' })] }));
    expect(d.kind === 'issue' && d.claims.network).toBe('mesh');
  });
  it.each<[string, Partial<IssueFacts>, string]>([
    ['a pod that is gone', { pod: undefined }, 'pod_gone'],
    ['a pod recreated under the same name', { pod: pod({ uid: 'u2' }) }, 'pod_gone'],
    ['a terminating pod', { pod: pod({ deletionTimestamp: new Date() }) }, 'pod_terminating'],
    ['a pod of another ServiceAccount', { pod: pod({}, 'web') }, 'wrong_service_account'],
    ['a pod no tunnel selects', { tunnels: [tunnel('c', 'web', ['web'])] }, 'no_tunnel'],
    [
      'tunnels of two networks',
      { tunnels: [tunnel('a', 'db', ['x']), tunnel('b', 'db', ['y'], 'n2')] },
      'no_tunnel',
    ],
    ['a missing network', { networks: [] }, 'no_tunnel'],
    ['an open network', { networks: [network(null)] }, 'network_open'],
  ])('refuses %s', (_what, over, reason) => {
    expect(decideCredential(facts(over))).toMatchObject({ kind: 'refused', reason });
  });
});
