/**
 * `peertunnel cluster-key` and `peertunnel credential issue|inspect`: the standalone way to make a
 * cluster's signing key and the credentials of its nodes (the operator will issue them in
 * Kubernetes, in the same format: contracts/credential.ts).
 */
import { randomBytes, verify } from 'node:crypto';
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { peerIdFromString } from '@libp2p/peer-id';
import {
  ClusterKeyError,
  generateClusterKey,
  MAX_CLUSTER_KEY_FILE_BYTES,
  parseClusterPrivateKey,
  parseClusterPublicKey,
} from '../../contracts/cluster-key.js';
import {
  CredentialError,
  checkValidity,
  credentialClaims,
  decodeCredential,
  MAX_CREDENTIAL_BYTES,
  signCredential,
} from '../../contracts/credential.js';

/** Longest lifetime `credential issue` signs: credentials are meant to be short-lived. */
export const MAX_TTL_SECONDS = 30 * 24 * 3600;

/** Writes a new cluster signing key (PEM, mode 0600); returns the line to paste into trust lists. */
export async function writeClusterKey(file: string, name?: string): Promise<string> {
  const { privatePem, publicKey } = generateClusterKey();
  await writeFile(file, privatePem, { mode: 0o600, flag: 'wx' });
  return name === undefined ? publicKey : `{ name: ${name}, publicKey: "${publicKey}" }`;
}

/** `30s`, `15m`, `1h`, `7d` (or plain seconds) as seconds. */
export function parseTtl(text: string): number {
  const m = /^(\d{1,7})([smhd]?)$/.exec(text);
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m?.[2] ?? ''] ?? 1;
  const seconds = m === null ? Number.NaN : Number(m[1]) * unit;
  if (!(seconds >= 1 && seconds <= MAX_TTL_SECONDS))
    throw new CredentialError(
      'malformed',
      `--ttl: expected 1s to 30d such as 90s, 15m, 1h or 7d, got "${text}"`,
    );
  return seconds;
}

export interface IssueOptions {
  clusterKeyFile: string;
  network: string;
  cluster: string;
  namespace: string;
  serviceAccount: string;
  peer: string;
  expose: string[];
  ttlSeconds: number;
  /** Unix seconds; now by default. */
  now?: number;
}

async function readSmall(file: string, max: number, what: string): Promise<string> {
  try {
    if ((await stat(file)).size > max) throw new ClusterKeyError(`${file} is larger than ${what} may be`);
    return await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ClusterKeyError) throw err;
    throw new ClusterKeyError(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/** Signs a credential for a peer with a cluster's key file; returns its text. */
export async function issueCredential(o: IssueOptions): Promise<string> {
  const key = parseClusterPrivateKey(await readSmall(o.clusterKeyFile, MAX_CLUSTER_KEY_FILE_BYTES, 'a key'));
  let peer: string;
  try {
    peer = peerIdFromString(o.peer).toString();
  } catch {
    throw new CredentialError('malformed', `--peer: expected a libp2p peer ID, got "${o.peer.slice(0, 80)}"`);
  }
  const now = o.now ?? Math.floor(Date.now() / 1000);
  const claims = credentialClaims(
    {
      network: o.network,
      cluster: o.cluster,
      namespace: o.namespace,
      serviceAccount: o.serviceAccount,
      peer,
      expose: o.expose,
    },
    now,
    o.ttlSeconds,
  );
  return `${signCredential(claims, key)}\n`;
}

/** Replaces a file in one step, so a node that polls it never reads half a credential. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
}

/** What `credential inspect` prints: the claims, their time state, and the signature if a key is given. */
export async function inspectCredential(
  file: string,
  publicKey?: string,
  nowMs = Date.now(),
): Promise<string> {
  const text = await readSmall(file, MAX_CREDENTIAL_BYTES * 2, 'a credential');
  const cred = decodeCredential(text);
  const c = cred.claims;
  const iso = (s: number) => new Date(s * 1000).toISOString();
  const validity = checkValidity(c, nowMs / 1000) ?? 'valid';
  const signature =
    publicKey === undefined
      ? 'not checked (give --public-key ed25519:... to check it)'
      : verify(null, cred.signed, parseClusterPublicKey(publicKey), cred.signature)
        ? 'good'
        : 'BAD: not signed by this key';
  return [
    `network:         ${c.network}`,
    `cluster:         ${c.cluster}`,
    `namespace:       ${c.namespace}`,
    `serviceAccount:  ${c.serviceAccount}`,
    `peer:            ${c.peer}`,
    `expose:          ${c.expose.length === 0 ? '(none)' : c.expose.join(', ')}`,
    `notBefore:       ${iso(c.notBefore)}`,
    `expires:         ${iso(c.expires)}`,
    `now:             ${validity}`,
    `signature:       ${signature}`,
    '',
  ].join('\n');
}
