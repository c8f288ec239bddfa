/**
 * This cluster's credential signing key (docs/architecture.md, Workload credentials): an Ed25519
 * key in a Secret of the operator's namespace, created by whichever replica starts first (the
 * loser of the create conflict reads the winner's) and never replaced: other clusters trust its
 * public half, so a new key would cut them off. A Secret that holds no readable key stops the
 * operator with one line saying so, rather than being overwritten.
 */
import type { KeyObject } from 'node:crypto';
import {
  formatClusterPublicKey,
  generateClusterKey,
  parseClusterPrivateKey,
} from '../../contracts/cluster-key.js';
import type { Logger } from '../../sidecar/node/logger.js';
import { ClusterKeySecretError } from '../errors.js';
import type { KubeClient } from './client.js';
import { ensureSharedSecret } from './shared-secret.js';

export const CLUSTER_KEY_SECRET_KEY = 'cluster.key';

export interface ClusterKey {
  privateKey: KeyObject;
  /** `ed25519:<base64url>` */
  publicKey: string;
}

export function ensureClusterKey(
  client: KubeClient,
  namespace: string,
  name: string,
  logger: Logger,
): Promise<ClusterKey> {
  const read = (pem: string): ClusterKey => {
    const privateKey = parseClusterPrivateKey(pem);
    return { privateKey, publicKey: formatClusterPublicKey(privateKey) };
  };
  return ensureSharedSecret(client, {
    namespace,
    name,
    component: 'cluster-key',
    type: 'Opaque',
    current: (existing) => {
      const pem = Buffer.from(existing.data?.[CLUSTER_KEY_SECRET_KEY] ?? '', 'base64').toString('utf8');
      try {
        return read(pem);
      } catch (err) {
        throw new ClusterKeySecretError(
          `Secret ${namespace}/${name} key "${CLUSTER_KEY_SECRET_KEY}": ${(err as Error).message}; the operator never replaces a cluster key (other clusters trust it): fix or delete the Secret`,
        );
      }
    },
    make: async () => {
      const { privatePem } = generateClusterKey();
      return {
        value: read(privatePem),
        data: { [CLUSTER_KEY_SECRET_KEY]: Buffer.from(privatePem).toString('base64') },
      };
    },
    written: (key) =>
      logger.info(
        { event: 'cluster_key_created', secret: name, publicKey: key.publicKey },
        'cluster signing key created',
      ),
    gaveUp: (message) => new ClusterKeySecretError(message),
  });
}
