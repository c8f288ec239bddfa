/**
 * A cluster's signing key: Ed25519, the private half a PKCS#8 PEM file (what
 * `peertunnel cluster-key` writes, and `openssl genpkey -algorithm ed25519` too), the public half
 * one line, `ed25519:<base64url of the 32-byte key>`, pasted into nodes' trusted cluster lists.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

export const CLUSTER_KEY_PREFIX = 'ed25519:';
/** `ed25519:` and 43 base64url characters. */
export const CLUSTER_PUBLIC_KEY_PATTERN = /^ed25519:[A-Za-z0-9_-]{43}$/;
/** A PEM private key file is far smaller; a larger one is refused unread. */
export const MAX_CLUSTER_KEY_FILE_BYTES = 4096;

export class ClusterKeyError extends Error {
  constructor(reason: string) {
    super(`invalid cluster key: ${reason}`);
    this.name = 'ClusterKeyError';
  }
}

/** The public key of a `ed25519:...` line. */
export function parseClusterPublicKey(text: string): KeyObject {
  if (!CLUSTER_PUBLIC_KEY_PATTERN.test(text))
    throw new ClusterKeyError('expected ed25519: and 43 base64url characters');
  const x = text.slice(CLUSTER_KEY_PREFIX.length);
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
  } catch {
    throw new ClusterKeyError('not an Ed25519 public key');
  }
}

/** The `ed25519:...` line of a public (or private) key. */
export function formatClusterPublicKey(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const jwk = pub.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new ClusterKeyError('not an Ed25519 key');
  return `${CLUSTER_KEY_PREFIX}${jwk.x}`;
}

/** A private key from PEM (PKCS#8) text; only Ed25519. */
export function parseClusterPrivateKey(pem: string): KeyObject {
  if (pem.length > MAX_CLUSTER_KEY_FILE_BYTES) throw new ClusterKeyError('the key file is too large');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: pem, format: 'pem' });
  } catch {
    throw new ClusterKeyError('expected a PEM private key (PKCS#8)');
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new ClusterKeyError('expected an Ed25519 key');
  return key;
}

/** A new key pair: the private key as PEM, the public key as its line. */
export function generateClusterKey(): { privatePem: string; publicKey: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKey: formatClusterPublicKey(privateKey),
  };
}
