/**
 * Pieces of the operator credential tests: real bound ServiceAccount tokens (TokenRequest for a
 * real pod object), a client of `POST /credential` that signs its proof with a libp2p key as a
 * sidecar does, and the objects of a credentialed namespace.
 */
import { request } from 'node:https';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { CREDENTIAL_AUDIENCE, proofMessage } from '../../contracts/credential-request.js';
import type { ControlPlane } from '../env/control-plane.js';

/** A token of the pod's ServiceAccount, bound to the pod, for `audience`. */
export async function boundToken(
  cp: ControlPlane,
  ns: string,
  sa: string,
  pod: { name: string; uid: string },
  audience = CREDENTIAL_AUDIENCE,
): Promise<string> {
  const r = await cp.request(`/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
    method: 'POST',
    contentType: 'application/json',
    body: JSON.stringify({
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: {
        audiences: [audience],
        expirationSeconds: 600,
        boundObjectRef: { apiVersion: 'v1', kind: 'Pod', name: pod.name, uid: pod.uid },
      },
    }),
  });
  if (r.status !== 201) throw new Error(`TokenRequest: ${r.status} ${r.body.slice(0, 300)}`);
  return (JSON.parse(r.body) as { status: { token: string } }).status.token;
}

export interface Requester {
  key: PrivateKey;
  peer: string;
}

export async function requester(): Promise<Requester> {
  const key = await generateKeyPair('Ed25519');
  return { key, peer: peerIdFromPrivateKey(key).toString() };
}

/** POSTs a credential request as a sidecar would; `signer` signs the proof (default: the peer's key). */
export async function askCredential(
  port: number,
  ca: string,
  token: string,
  who: Requester,
  signer: PrivateKey = who.key,
): Promise<{ status: number; body: { credential?: string; reason?: string; message?: string } }> {
  const at = Math.floor(Date.now() / 1000);
  const proof = Buffer.from(await signer.sign(proofMessage(who.peer, token, at))).toString('base64url');
  const body = JSON.stringify({ v: 1, token, peer: who.peer, at, proof });
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/credential', method: 'POST', ca, agent: false },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export interface PodObject {
  metadata: { name: string; uid: string };
}

/** A pod of `sa` labelled app=`app`; returns it as created (its uid). */
export async function createPod(
  cp: ControlPlane,
  ns: string,
  name: string,
  app: string,
  sa: string,
): Promise<PodObject> {
  const out = await cp.kubectlOk(['create', '-f', '-', '-o', 'json'], {
    input: JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: ns, labels: { app } },
      spec: { serviceAccountName: sa, containers: [{ name: 'app', image: 'example/app:1' }] },
    }),
  });
  return JSON.parse(out) as PodObject;
}

/** A namespace with the swarm key Secret, ServiceAccounts and a credentialed PeerNetwork `mesh`. */
export async function credentialedNamespace(
  cp: ControlPlane,
  ns: string,
  o: { key: string; bootstrap: string[]; serviceAccounts: string[]; ttlSeconds: number },
): Promise<void> {
  await cp.kubectlOk(['create', 'namespace', ns]);
  await cp.kubectlOk([
    '-n',
    ns,
    'create',
    'secret',
    'generic',
    'mesh-key',
    `--from-literal=swarm.key=${o.key}`,
  ]);
  await cp.apply([
    ...o.serviceAccounts.map((name) => ({
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name, namespace: ns },
    })),
    {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind: 'PeerNetwork',
      metadata: { name: 'mesh', namespace: ns },
      spec: {
        swarmKeySecretRef: { name: 'mesh-key' },
        bootstrap: o.bootstrap,
        // One network name in every namespace (and cluster) of the network.
        trust: { network: 'mesh', credentialTTLSeconds: o.ttlSeconds },
      },
    },
  ]);
}
