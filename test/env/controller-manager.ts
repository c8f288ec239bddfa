/**
 * What the test control plane's kube-controller-manager runs and how: the controllers a cluster
 * without nodes or a cloud needs for workloads (Deployments make ReplicaSets make Pods, owners'
 * deletion cascades, namespaces finish deleting, service accounts and their CA appear), and the
 * flags that keep it on 127.0.0.1 and out of other control planes' way.
 */
import { join } from 'node:path';

/**
 * `--controllers`, by canonical name (`kube-controller-manager --help` lists them). Left out on
 * purpose: node lifecycle, node IPAM, taint eviction, ttl, cloud and service/route controllers (no
 * nodes, no cloud); pod-garbage-collector (it force-deletes pods bound to a node without a Node
 * object, which a fake kubelet may well do); endpoints/endpointslice (nothing routes ClusterIPs
 * here); daemonset, statefulset, job, cronjob, hpa, disruption, quotas, PVs, CSRs.
 */
export const CONTROLLERS: readonly string[] = [
  // A Deployment's ReplicaSets, rollouts and `kubectl scale deployment`.
  'deployment-controller',
  // A ReplicaSet's pods: creates missing ones (also after a pod is deleted), deletes extras.
  'replicaset-controller',
  // Cascading deletion through ownerReferences (a deleted Deployment takes its ReplicaSets and Pods).
  'garbage-collector-controller',
  // Deleting a namespace deletes its content and then the namespace, instead of Terminating forever.
  'namespace-controller',
  // The `default` ServiceAccount of every namespace.
  'serviceaccount-controller',
  // Tokens for Secrets of type kubernetes.io/service-account-token (signed with sa.key).
  'serviceaccount-token-controller',
  // The `kube-root-ca.crt` ConfigMap of every namespace (the CA pods use to trust the API server).
  'root-ca-certificate-publisher-controller',
];

/**
 * With real nodes (real-node.ts) a cluster also needs: the node lifecycle controller (it lifts the
 * not-ready taint a kubelet registers its Node with) and Services' endpoints (the API server calls
 * a webhook by Service at an endpoint's pod address; kube-proxy forwards to them).
 */
export const REAL_NODE_CONTROLLERS: readonly string[] = [
  ...CONTROLLERS,
  'node-lifecycle-controller',
  'endpoints-controller',
  'endpointslice-controller',
];

export interface ControllerManagerPaths {
  /** The control plane's temp dir (certs, logs). */
  readonly dir: string;
  /** An admin (system:masters) kubeconfig for the API server. */
  readonly kubeconfigPath: string;
  /** PEM private key the API server verifies service account tokens with (its public half). */
  readonly serviceAccountKeyPath: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly rootCaPath: string;
}

/** kube-controller-manager's flags (names without dashes), serving /healthz on 127.0.0.1:`port`. */
export function controllerManagerArgs(p: ControllerManagerPaths, port: number): Record<string, string> {
  return {
    kubeconfig: p.kubeconfigPath,
    // Its /healthz asks the API server who a caller is (TokenReview) and may they (SAR).
    'authentication-kubeconfig': p.kubeconfigPath,
    'authorization-kubeconfig': p.kubeconfigPath,
    // Bearer tokens only: no client-certificate or front-proxy config to read from kube-system (the
    // API server here publishes none, and looking for it floods the log with errors).
    'authentication-skip-lookup': 'true',
    'bind-address': '127.0.0.1',
    'secure-port': String(port),
    // Its self-signed serving cert goes here, not into a shared default directory.
    'cert-dir': join(p.dir, 'kube-controller-manager-certs'),
    // One instance per cluster, and nothing to fail over to.
    'leader-elect': 'false',
    controllers: CONTROLLERS.join(','),
    'service-account-private-key-file': p.serviceAccountKeyPath,
    'root-ca-file': p.rootCaPath,
    // Every controller acts with the admin kubeconfig: RBAC of per-controller accounts is not the
    // subject of these tests, and a missing grant would only make pods silently not appear.
    'use-service-account-credentials': 'false',
    profiling: 'false',
  };
}

const pemCert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

/**
 * The CA of kube-apiserver's self-generated `apiserver.crt`, which holds the serving certificate
 * followed by the CA that signed it: the last certificate of the file.
 */
export function lastCertificate(pem: string): string {
  const certs = pem.match(pemCert) ?? [];
  const last = certs.at(-1);
  if (last === undefined) throw new Error('no PEM certificate in the API server certificate file');
  return last.endsWith('\n') ? last : `${last}\n`;
}
