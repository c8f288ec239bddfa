import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { formatClusterPublicKey } from '../../../../contracts/cluster-key.js';
import { signCredential } from '../../../../contracts/credential.js';
import { trustProofMessage } from '../../../../contracts/trust-sync.js';
import type { PeerNetwork } from '../../../../crds/schema.js';
import { decideTrust, type TrustFacts } from '../../../../operator/credentials/trust-answer.js';

const clusterKey = generateKeyPairSync('ed25519').privateKey;
const publicKey = formatClusterPublicKey(clusterKey);
const otherKey = generateKeyPairSync('ed25519').privateKey;
const B = { name: 'b', publicKey: formatClusterPublicKey(otherKey) };
const NOW = 1_700_000_000;

const network = (name: string, trust: PeerNetwork['spec']['trust']): PeerNetwork => ({
  apiVersion: 'peertunnel.io/v1alpha1',
  kind: 'PeerNetwork',
  metadata: { name, namespace: 'shop' },
  spec: {
    swarmKeySecretRef: { name: 'k' },
    bootstrap: ['/ip4/127.0.0.1/tcp/1'],
    ...(trust ? { trust } : {}),
  },
});

async function request(
  o: {
    peerKey?: PrivateKey;
    signer?: PrivateKey;
    key?: typeof clusterKey;
    cluster?: string;
    expires?: number;
    at?: number;
  } = {},
) {
  const peerKey = o.peerKey ?? (await generateKeyPair('Ed25519'));
  const peer = peerIdFromPrivateKey(peerKey).toString();
  const credential = signCredential(
    {
      v: 1,
      network: 'mesh',
      cluster: o.cluster ?? 'a',
      namespace: 'shop',
      serviceAccount: 'db',
      peer,
      expose: [],
      notBefore: NOW - 10,
      expires: o.expires ?? NOW + 60,
    },
    o.key ?? clusterKey,
  );
  const at = o.at ?? NOW;
  const proof = Buffer.from(await (o.signer ?? peerKey).sign(trustProofMessage(peer, at))).toString(
    'base64url',
  );
  return { v: 1 as const, credential, at, proof };
}

const facts = async (over: Partial<TrustFacts> = {}, req = request()): Promise<TrustFacts> => ({
  request: await req,
  cluster: 'a',
  publicKey,
  key: createPublicKey(clusterKey),
  networks: () => [network('mesh', { network: 'mesh', clusters: [B] }), network('open', undefined)],
  nowSeconds: NOW,
  ...over,
});

describe('decideTrust', () => {
  it("answers the network's trusted clusters as the cache has them, this cluster first", async () => {
    const d = await decideTrust(await facts());
    expect(d).toMatchObject({
      kind: 'answer',
      answer: { v: 1, network: 'mesh', clusters: [{ name: 'a', publicKey }, B] },
    });
  });

  it('refuses a credential this cluster did not sign, or one that expired', async () => {
    const reasons = async (req: ReturnType<typeof request>) => {
      const d = await decideTrust(await facts({}, req));
      return d.kind === 'refused' ? [d.reason, d.message] : ['answered'];
    };
    expect(await reasons(request({ cluster: 'b', key: otherKey }))).toEqual([
      'bad_credential',
      "the credential is not this cluster's (untrusted_cluster)",
    ]);
    expect(await reasons(request({ key: otherKey }))).toEqual([
      'bad_credential',
      "the credential is not this cluster's (bad_signature)",
    ]);
    expect(await reasons(request({ expires: NOW }))).toEqual(['bad_credential', 'the credential is expired']);
    const d = await decideTrust({
      ...(await facts()),
      request: { v: 1, credential: 'nope', at: NOW, proof: 'x' },
    });
    expect(d).toMatchObject({ kind: 'refused', reason: 'bad_credential' });
  });

  it('refuses a proof by another key, or an old one', async () => {
    const stranger = await generateKeyPair('Ed25519');
    expect(await decideTrust(await facts({}, request({ signer: stranger })))).toMatchObject({
      reason: 'bad_proof',
    });
    expect(await decideTrust(await facts({}, request({ at: NOW - 121 })))).toMatchObject({
      reason: 'stale_proof',
    });
  });

  it('refuses when no one network, or several, of the namespace carry the name', async () => {
    expect(await decideTrust(await facts({ networks: () => [] }))).toMatchObject({ reason: 'network_gone' });
    // spec.trust removed: an open network answers no list (the sidecar keeps its own).
    expect(await decideTrust(await facts({ networks: () => [network('mesh', undefined)] }))).toMatchObject({
      reason: 'network_gone',
    });
    const two = () => [network('mesh', { network: 'mesh' }), network('mesh2', { network: 'mesh' })];
    expect(await decideTrust(await facts({ networks: two }))).toMatchObject({ reason: 'network_ambiguous' });
  });
});
