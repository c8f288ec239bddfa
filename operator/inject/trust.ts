/**
 * The credential parts of a sidecar (docs/architecture.md, Workload credentials) for a network
 * with `spec.trust`: the node config's `trust` section (network name, trusted clusters with this
 * cluster first, uncredentialed names, where the credential comes from), a projected
 * ServiceAccount token for the operator alone (audience `peertunnel`, bound to the pod), and a
 * small memory volume the sidecar writes its credential to (its root filesystem is read-only). Pure.
 */
import type { V1Volume, V1VolumeMount } from '@kubernetes/client-node';
import { CREDENTIAL_AUDIENCE } from '../../contracts/credential-request.js';
import type { TrustedCluster } from '../../contracts/trust-sync.js';
import type { PeerNetwork } from '../../crds/schema.js';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import type { InjectSettings } from './settings.js';

export const TOKEN_VOLUME = 'peertunnel-token';
export const TOKEN_DIR = '/var/run/secrets/peertunnel.io/token';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
export const CREDENTIAL_VOLUME = 'peertunnel-credential';
export const CREDENTIAL_DIR = '/var/run/peertunnel.io/credential';
export const CREDENTIAL_FILE = `${CREDENTIAL_DIR}/credential`;
/** The shortest a projected token may live (the API server's minimum); the kubelet renews it at 80%. */
export const TOKEN_EXPIRATION_SECONDS = 600;

/** What the operator tells sidecars about itself as an issuer. */
export interface CredentialSettings {
  /** This cluster's name, as credentials carry it (`--cluster-name`). */
  cluster: string;
  /** This cluster's public key line. */
  publicKey: string;
  /** https://<service>.<namespace>.svc:443/credential */
  issuerUrl: string;
  /** The CA of the operator's serving certificate. */
  caPem: string;
}

/** The network name credentials carry: spec.trust.network, else `<namespace>/<name>`. */
export function credentialNetworkName(network: PeerNetwork): string {
  return network.spec.trust?.network ?? `${network.metadata.namespace ?? ''}/${network.metadata.name ?? ''}`;
}

/**
 * The clusters a network's sidecars trust: this cluster first, then `spec.trust.clusters`. Rendered
 * at injection, and answered to the sidecars' polls (operator/credentials/trust-handler.ts) as the
 * PeerNetwork is now.
 */
export function trustedClusters(
  network: PeerNetwork,
  own: { cluster: string; publicKey: string },
): TrustedCluster[] {
  return [
    { name: own.cluster, publicKey: own.publicKey },
    ...(network.spec.trust?.clusters ?? []).map((c) => ({ name: c.name, publicKey: c.publicKey })),
  ];
}

/** The node config's trust section; undefined for an open network. */
export function renderTrust(
  network: PeerNetwork,
  credentials: CredentialSettings,
): NonNullable<NodeConfigInput['trust']> {
  const trust = network.spec.trust ?? {};
  return {
    network: credentialNetworkName(network),
    credential: {
      file: CREDENTIAL_FILE,
      issuer: { url: credentials.issuerUrl, tokenFile: TOKEN_FILE, ca: credentials.caPem },
    },
    clusters: trustedClusters(network, credentials),
    uncredentialed: [...(trust.uncredentialed ?? [])],
  };
}

/** The token and credential volumes, in that order. */
export function trustVolumes(): V1Volume[] {
  return [
    {
      name: TOKEN_VOLUME,
      projected: {
        defaultMode: 0o444,
        sources: [
          {
            serviceAccountToken: {
              audience: CREDENTIAL_AUDIENCE,
              expirationSeconds: TOKEN_EXPIRATION_SECONDS,
              path: 'token',
            },
          },
        ],
      },
    },
    { name: CREDENTIAL_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '1Mi' } },
  ];
}

export function trustMounts(): V1VolumeMount[] {
  return [
    { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
    { name: CREDENTIAL_VOLUME, mountPath: CREDENTIAL_DIR },
  ];
}

/** Why a network with spec.trust cannot get credentialed sidecars from this operator, if it cannot. */
export function trustProblem(network: PeerNetwork, settings: InjectSettings): string | undefined {
  if (network.spec.trust === undefined || settings.credentials !== undefined) return undefined;
  return `network ${network.metadata.name ?? '?'} sets spec.trust, but the operator has no cluster name: set the Helm value clusterName (flag --cluster-name)`;
}
