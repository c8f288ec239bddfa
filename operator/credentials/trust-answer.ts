/**
 * What the operator answers a sidecar's trust poll (contracts/trust-sync.ts): pure apart from the
 * signature checks. The caller is whoever holds a live credential of this cluster and the key of
 * the peer it names; the answer is the trusted clusters of the PeerNetwork its credential names,
 * read from the cache now (docs/architecture.md, Trusted clusters from the operator).
 */
import type { KeyObject } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import {
  checkIssuer,
  checkValidity,
  type DecodedCredential,
  decodeCredential,
} from '../../contracts/credential.js';
import { PROOF_WINDOW_SECONDS } from '../../contracts/credential-request.js';
import {
  type TrustAnswer,
  type TrustRefusal,
  type TrustRequest,
  trustProofMessage,
} from '../../contracts/trust-sync.js';
import type { PeerNetwork } from '../../crds/schema.js';
import { credentialNetworkName, trustedClusters } from '../inject/trust.js';

export interface TrustFacts {
  request: TrustRequest;
  /** This cluster: its name, its public key line and that key. */
  cluster: string;
  publicKey: string;
  key: KeyObject;
  /** The PeerNetworks of a namespace (the cache). */
  networks(namespace: string): readonly PeerNetwork[];
  nowSeconds: number;
}

export type TrustDecision =
  | { kind: 'answer'; answer: TrustAnswer; credential: DecodedCredential }
  | { kind: 'refused'; reason: TrustRefusal; message: string; peer?: string };

const refuse = (reason: TrustRefusal, message: string, peer?: string): TrustDecision => ({
  kind: 'refused',
  reason,
  message,
  ...(peer === undefined ? {} : { peer }),
});

export async function decideTrust(f: TrustFacts): Promise<TrustDecision> {
  let cred: DecodedCredential;
  try {
    cred = decodeCredential(f.request.credential);
  } catch (err) {
    return refuse('bad_credential', `not a credential: ${(err as Error).message}`);
  }
  const { claims } = cred;
  const issuer = checkIssuer(cred, {
    network: claims.network,
    peer: claims.peer,
    keysOf: (c) => (c === f.cluster ? [f.key] : []),
  });
  if (issuer !== undefined)
    return refuse('bad_credential', `the credential is not this cluster's (${issuer})`, claims.peer);
  const time = checkValidity(claims, f.nowSeconds);
  if (time !== undefined)
    return refuse('bad_credential', `the credential is ${time.replace('_', ' ')}`, claims.peer);
  if (Math.abs(f.nowSeconds - f.request.at) > PROOF_WINDOW_SECONDS)
    return refuse('stale_proof', 'the proof was made too long ago (or the clocks differ)', claims.peer);
  if (!(await proves(claims.peer, f.request)))
    return refuse('bad_proof', `the proof is not a signature of peer ${claims.peer}`, claims.peer);
  const networks = f
    .networks(claims.namespace)
    .filter((n) => n.spec.trust !== undefined && credentialNetworkName(n) === claims.network);
  if (networks.length !== 1)
    return refuse(
      networks.length === 0 ? 'network_gone' : 'network_ambiguous',
      networks.length === 0
        ? `no PeerNetwork of namespace ${claims.namespace} with spec.trust carries network ${claims.network}`
        : `${networks.length} PeerNetworks of namespace ${claims.namespace} carry network ${claims.network}`,
      claims.peer,
    );
  const network = networks[0] as PeerNetwork;
  return {
    kind: 'answer',
    answer: { v: 1, network: claims.network, clusters: trustedClusters(network, f) },
    credential: cred,
  };
}

async function proves(peer: string, r: TrustRequest): Promise<boolean> {
  try {
    const key = peerIdFromString(peer).publicKey;
    if (key === undefined) return false;
    return await key.verify(trustProofMessage(peer, r.at), Buffer.from(r.proof, 'base64url'));
  } catch {
    return false;
  }
}
