/**
 * The token the operator shows sidecars to read their /status from off the pod: kept in a Secret
 * in the operator's namespace, shared by every replica, created by whichever replica starts first
 * (the loser of the create conflict reads the winner's). Sidecars get only its SHA-256.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from '../../sidecar/node/logger.js';
import { StatusTokenError } from '../errors.js';
import type { KubeClient } from './client.js';
import { ensureSharedSecret } from './shared-secret.js';

export const STATUS_TOKEN_KEY = 'token';
const TOKEN = /^[A-Za-z0-9_-]{43,512}$/;

export const tokenSha256 = (token: string) => createHash('sha256').update(token, 'utf8').digest('hex');

export function ensureStatusToken(
  client: KubeClient,
  namespace: string,
  name: string,
  logger: Logger,
): Promise<string> {
  return ensureSharedSecret(client, {
    namespace,
    name,
    component: 'status-token',
    type: 'Opaque',
    current: (existing) => {
      const token = Buffer.from(existing.data?.[STATUS_TOKEN_KEY] ?? '', 'base64').toString('utf8');
      return TOKEN.test(token) ? token : undefined;
    },
    make: async () => {
      const token = randomBytes(32).toString('base64url');
      return { value: token, data: { [STATUS_TOKEN_KEY]: Buffer.from(token).toString('base64') } };
    },
    written: () =>
      logger.info({ event: 'status_token_created', secret: name }, 'sidecar status token created'),
    gaveUp: (message) => new StatusTokenError(message),
  });
}
