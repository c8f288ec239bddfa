/**
 * The Secret all replicas share for the webhook's certificate: created if absent, re-issued when it
 * no longer serves (expiring, names changed), with optimistic concurrency so two replicas starting
 * together end up with one certificate: the loser of a create or update conflict re-reads and uses
 * the winner's.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { CertificateError } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import { ensureSharedSecret } from '../kube/shared-secret.js';
import { bundleProblem, type CertBundle, caStillValid, firstPem, issueCertificates } from './certs.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const unb64 = (s: string | undefined) => (s === undefined ? '' : Buffer.from(s, 'base64').toString('utf8'));

export function bundleFromSecret(secret: V1Secret): CertBundle {
  return {
    caPem: unb64(secret.data?.['ca.crt']),
    certPem: unb64(secret.data?.['tls.crt']),
    keyPem: unb64(secret.data?.['tls.key']),
  };
}

export function ensureWebhookSecret(
  client: KubeClient,
  namespace: string,
  name: string,
  hosts: readonly string[],
  logger: Logger,
): Promise<CertBundle> {
  return ensureSharedSecret(client, {
    namespace,
    name,
    component: 'webhook',
    type: 'kubernetes.io/tls',
    current: (existing) => {
      const bundle = bundleFromSecret(existing);
      const problem = bundleProblem(bundle, hosts);
      if (problem === undefined) return bundle;
      logger.info({ event: 'webhook_cert_reissue', reason: problem }, 're-issuing the webhook certificate');
      return undefined;
    },
    make: async (existing) => {
      // Trusted alongside the new CA until every API server has the new caBundle.
      const old = existing === undefined ? undefined : bundleFromSecret(existing).caPem;
      const previousCa = old !== undefined && caStillValid(old) ? firstPem(old) : '';
      const fresh = await issueCertificates(hosts);
      const bundle = { ...fresh, caPem: `${fresh.caPem.trimEnd()}\n${previousCa}` };
      return {
        value: bundle,
        data: { 'ca.crt': b64(bundle.caPem), 'tls.crt': b64(bundle.certPem), 'tls.key': b64(bundle.keyPem) },
      };
    },
    written: () =>
      logger.info({ event: 'webhook_cert_issued', secret: name, hosts }, 'webhook certificate issued'),
    gaveUp: (message) => new CertificateError(message),
  });
}
