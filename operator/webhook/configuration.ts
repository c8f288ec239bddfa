/**
 * The MutatingWebhookConfiguration, applied (server-side) by every replica with identical content,
 * so whichever starts first makes it right and `caBundle` follows the shared Secret.
 *
 * failurePolicy defaults to Ignore: an operator outage must not stop every pod in the cluster from
 * being created (the operator's own pods included, after a node loss). The price is a pod created
 * without its sidecar, and that is not silent: the tunnel's status names it (PodsMissingSidecar).
 * `Fail` is a flag away for clusters that prefer the opposite. timeoutSeconds is 5: injection is
 * in-memory and answers in milliseconds; a short timeout bounds how long a dead endpoint can delay
 * pod creation.
 */

import { INJECT_ANNOTATION } from '../inject/inject.js';
import { ALWAYS_EXCLUDED_NAMESPACES } from '../inject/settings.js';
import { type KubeClient, paths } from '../kube/client.js';

export const WEBHOOK_NAME = 'inject.peertunnel.io';
export const WEBHOOK_PATH = '/mutate-pods';

export interface WebhookConfigInit {
  /** Name of the MutatingWebhookConfiguration. */
  name: string;
  /** A URL (service-less, e.g. in tests) or the Service in front of the operator. */
  target: { url: string } | { service: { namespace: string; name: string; port: number } };
  caPem: string;
  operatorNamespace: string;
  excludedNamespaces: readonly string[];
  failurePolicy: 'Ignore' | 'Fail';
  timeoutSeconds: number;
}

export function renderWebhookConfiguration(c: WebhookConfigInit) {
  const caBundle = Buffer.from(c.caPem).toString('base64');
  const clientConfig =
    'url' in c.target
      ? { url: c.target.url, caBundle }
      : { service: { ...c.target.service, path: WEBHOOK_PATH }, caBundle };
  const excluded = [
    ...new Set([c.operatorNamespace, ...ALWAYS_EXCLUDED_NAMESPACES, ...c.excludedNamespaces]),
  ].sort();
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: c.name, labels: { 'app.kubernetes.io/name': 'peertunnel' } },
    webhooks: [
      {
        name: WEBHOOK_NAME,
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy: c.failurePolicy,
        timeoutSeconds: c.timeoutSeconds,
        matchPolicy: 'Equivalent',
        // Called again when a later webhook changed the pod; inject() then answers AlreadyInjected.
        reinvocationPolicy: 'IfNeeded',
        clientConfig,
        rules: [
          {
            operations: ['CREATE'],
            apiGroups: [''],
            apiVersions: ['v1'],
            resources: ['pods'],
            scope: 'Namespaced',
          },
        ],
        // Never the operator's own namespace or kube-system (inject() refuses them too).
        namespaceSelector: {
          matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: excluded }],
        },
        // Pods that opt out by label are not even sent (by annotation, inject() skips them).
        objectSelector: {
          matchExpressions: [{ key: INJECT_ANNOTATION, operator: 'NotIn', values: ['false', 'disabled'] }],
        },
      },
    ],
  };
}

export async function applyWebhookConfiguration(client: KubeClient, c: WebhookConfigInit): Promise<void> {
  await client.apply(paths.mutatingWebhook(c.name), renderWebhookConfiguration(c));
}
