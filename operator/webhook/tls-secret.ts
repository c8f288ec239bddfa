/**
 * The Secret all replicas share for the webhook's certificate: created if absent, re-issued when it
 * no longer serves (expiring, names changed), with optimistic concurrency so two replicas starting
 * together end up with one certificate: the loser of a create or update conflict re-reads and uses
 * the winner's.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { CertificateError, isConflict } from '../errors.js';
import { type KubeClient, paths } from '../kube/client.js';
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

export async function ensureWebhookSecret(
  client: KubeClient,
  namespace: string,
  name: string,
  hosts: readonly string[],
  logger: Logger,
): Promise<CertBundle> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = await client.find<V1Secret>(paths.secret(namespace, name));
    let previousCa = '';
    if (existing !== undefined) {
      const bundle = bundleFromSecret(existing);
      const problem = bundleProblem(bundle, hosts);
      if (problem === undefined) return bundle;
      logger.info({ event: 'webhook_cert_reissue', reason: problem }, 're-issuing the webhook certificate');
      // Trusted alongside the new CA until every API server has the new caBundle.
      previousCa = caStillValid(bundle.caPem) ? firstPem(bundle.caPem) : '';
    }
    const fresh = await issueCertificates(hosts);
    const bundle = { ...fresh, caPem: `${fresh.caPem.trimEnd()}\n${previousCa}` };
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name,
        namespace,
        labels: { 'app.kubernetes.io/name': 'peertunnel', 'app.kubernetes.io/component': 'webhook' },
        resourceVersion: existing?.metadata?.resourceVersion,
      },
      type: 'kubernetes.io/tls',
      data: { 'ca.crt': b64(bundle.caPem), 'tls.crt': b64(bundle.certPem), 'tls.key': b64(bundle.keyPem) },
    };
    try {
      if (existing === undefined) await client.create(paths.secrets(namespace), body);
      else await client.replace(paths.secret(namespace, name), body);
      logger.info({ event: 'webhook_cert_issued', secret: name, hosts }, 'webhook certificate issued');
      return bundle;
    } catch (err) {
      // 409: another replica created or replaced it first; use theirs.
      if (!isConflict(err)) throw err;
    }
  }
  throw new CertificateError(`Secret ${namespace}/${name} kept changing under us; giving up for now`);
}
