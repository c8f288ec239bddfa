/**
 * The token the operator shows sidecars to read their /status from off the pod: kept in a Secret
 * in the operator's namespace, shared by every replica, created by whichever replica starts first
 * (the loser of the create conflict reads the winner's). Sidecars get only its SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { isConflict, StatusTokenError } from '../errors.js';
import { type KubeClient, paths } from './client.js';

export const STATUS_TOKEN_KEY = 'token';
const TOKEN = /^[A-Za-z0-9_-]{43,512}$/;

export const tokenSha256 = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export async function ensureStatusToken(
  client: KubeClient,
  namespace: string,
  name: string,
  logger: Logger,
): Promise<string> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = await client.find<V1Secret>(paths.secret(namespace, name));
    const current = Buffer.from(existing?.data?.[STATUS_TOKEN_KEY] ?? '', 'base64').toString('utf8');
    if (TOKEN.test(current)) return current;
    const token = randomBytes(32).toString('base64url');
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace,
        labels: { 'app.kubernetes.io/name': 'peertunnel', 'app.kubernetes.io/component': 'status-token' },
        resourceVersion: existing?.metadata?.resourceVersion,
      },
      type: 'Opaque',
      data: { [STATUS_TOKEN_KEY]: Buffer.from(token).toString('base64') },
    };
    try {
      if (existing === undefined) await client.create(paths.secrets(namespace), body);
      else await client.replace(paths.secret(namespace, name), body);
      logger.info({ event: 'status_token_created', secret: name }, 'sidecar status token created');
      return token;
    } catch (err) {
      // 409: another replica wrote it first; use theirs.
      if (!isConflict(err)) throw err;
    }
  }
  throw new StatusTokenError(`Secret ${namespace}/${name} kept changing under us; giving up for now`);
}
