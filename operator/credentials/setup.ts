/**
 * The operator's credential parts at start (docs/architecture.md, Workload credentials): the
 * cluster key from its Secret, what sidecars are told about the issuer, and the issuer's route on
 * the webhook's HTTPS server, and the trusted-cluster answer sidecars poll. Nothing when the operator has no cluster name.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { CREDENTIAL_PATH } from '../../contracts/credential-request.js';
import { TRUST_PATH } from '../../contracts/trust-sync.js';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import type { Logger } from '../../sidecar/node/logger.js';
import type { CredentialSettings } from '../inject/trust.js';
import type { KubeClient } from '../kube/client.js';
import { type ClusterKey, ensureClusterKey } from '../kube/cluster-key-secret.js';
import type { OperatorMetrics } from '../metrics.js';
import { CredentialIssuer } from './issuer.js';
import { TrustHandler } from './trust-handler.js';

export interface CredentialOptions {
  clusterName: string;
  /** The Secret of the signing key in the operator's namespace. */
  keySecret: string;
  /** Where sidecars reach `POST /credential`. */
  issuerUrl: string;
}

export interface Credentials {
  key: ClusterKey;
  settings: CredentialSettings;
  /** The issuer's route, once the caches it reads exist. */
  routes(sources: {
    tunnels(namespace: string): readonly PeerTunnel[];
    networks(namespace: string): readonly PeerNetwork[];
    allowRemoteExposeNamespaces: readonly string[];
  }): Record<string, (req: IncomingMessage, res: ServerResponse) => void>;
}

export async function prepareCredentials(
  o: CredentialOptions | undefined,
  deps: { client: KubeClient; namespace: string; caPem: string; metrics: OperatorMetrics; logger: Logger },
): Promise<Credentials | undefined> {
  if (o === undefined) return undefined;
  const key = await ensureClusterKey(deps.client, deps.namespace, o.keySecret, deps.logger);
  deps.logger.info(
    { event: 'cluster_key', cluster: o.clusterName, publicKey: key.publicKey },
    'workload credentials on: this cluster signs with this key',
  );
  return {
    key,
    settings: { cluster: o.clusterName, publicKey: key.publicKey, issuerUrl: o.issuerUrl, caPem: deps.caPem },
    routes: (sources) => {
      const issuer = new CredentialIssuer({
        client: deps.client,
        cluster: o.clusterName,
        privateKey: key.privateKey,
        ...sources,
        metrics: deps.metrics,
        logger: deps.logger,
      });
      const trust = new TrustHandler({
        cluster: o.clusterName,
        publicKey: key.publicKey,
        privateKey: key.privateKey,
        networks: sources.networks,
        metrics: deps.metrics,
        logger: deps.logger,
      });
      return {
        [CREDENTIAL_PATH]: (req, res) => issuer.handle(req, res),
        [TRUST_PATH]: (req, res) => trust.handle(req, res),
      };
    },
  };
}
