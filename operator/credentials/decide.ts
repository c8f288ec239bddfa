/**
 * Whether a sidecar gets a credential, and what it says: pure functions of the TokenReview's
 * answer, the pod as the API server has it now, and the tunnels and networks of its namespace
 * (docs/architecture.md, Workload credentials). The I/O is in `issuer.ts`.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { type CredentialClaims, credentialClaims } from '../../contracts/credential.js';
import type { IssueRefusal } from '../../contracts/credential-request.js';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import { CREDENTIAL_TTL } from '../../crds/trust-schema.js';
import { selectingTunnels } from '../inject/inject.js';
import { credentialNetworkName } from '../inject/trust.js';
import { tunnelPolicyProblem } from '../inject/tunnel-policy.js';

export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
const SA_USER = /^system:serviceaccount:([a-z0-9][-a-z0-9]{0,62}):([a-z0-9][-a-z0-9.]{0,252})$/;

/** What a TokenReview answered (status). */
export interface TokenReviewStatus {
  authenticated?: boolean;
  user?: { username?: string; uid?: string; extra?: Record<string, string[]> };
  audiences?: string[];
  error?: string;
}

/** The workload a bound token names: its ServiceAccount and its pod. */
export interface TokenIdentity {
  namespace: string;
  serviceAccount: string;
  pod: string;
  podUid: string;
}

export type Refused = { kind: 'refused'; reason: IssueRefusal; message: string };
const refuse = (reason: IssueRefusal, message: string): Refused => ({ kind: 'refused', reason, message });

/** Who the token says the caller is; only a ServiceAccount token bound to a pod will do. */
export function identityOf(review: TokenReviewStatus, audience: string): TokenIdentity | Refused {
  if (review.authenticated !== true)
    return refuse(
      'token_invalid',
      `the API server did not accept the token: ${review.error ?? 'not authenticated'}`,
    );
  // The API server checked the audience; an answer for another one would be its bug, not ours to trust.
  if (review.audiences !== undefined && !review.audiences.includes(audience))
    return refuse('token_invalid', `the token is not for audience "${audience}"`);
  const m = SA_USER.exec(review.user?.username ?? '');
  if (m === null) return refuse('not_a_pod_token', 'not a ServiceAccount token');
  const pod = review.user?.extra?.[POD_NAME_EXTRA]?.[0];
  const podUid = review.user?.extra?.[POD_UID_EXTRA]?.[0];
  if (pod === undefined || podUid === undefined)
    return refuse('not_a_pod_token', 'the token is not bound to a pod (use the projected token of the pod)');
  return { namespace: m[1] ?? '', serviceAccount: m[2] ?? '', pod, podUid };
}

export interface IssueFacts {
  identity: TokenIdentity;
  /** The pod as a GET returned it now; undefined when it is gone. */
  pod: V1Pod | undefined;
  /** Tunnels and networks of the pod's namespace (the caches). */
  tunnels: readonly PeerTunnel[];
  networks: readonly PeerNetwork[];
  peer: string;
  cluster: string;
  allowRemoteExposeNamespaces: readonly string[];
  nowSeconds: number;
}

/** The claims to sign, or why not. */
export function decideCredential(f: IssueFacts): { kind: 'issue'; claims: CredentialClaims } | Refused {
  const { identity: id, pod } = f;
  if (pod === undefined || pod.metadata?.uid !== id.podUid)
    return refuse('pod_gone', `pod ${id.namespace}/${id.pod} no longer exists`);
  if (
    pod.metadata?.deletionTimestamp !== undefined ||
    ['Succeeded', 'Failed'].includes(pod.status?.phase ?? '')
  )
    return refuse('pod_terminating', `pod ${id.namespace}/${id.pod} is terminating`);
  const podSa = pod.spec?.serviceAccountName ?? 'default';
  if (podSa !== id.serviceAccount)
    return refuse(
      'wrong_service_account',
      `pod ${id.pod} runs as ${podSa}, the token is ${id.serviceAccount}'s`,
    );
  const tunnels = selectingTunnels(pod, id.namespace, f.tunnels).filter(
    (t) => tunnelPolicyProblem(t, f.allowRemoteExposeNamespaces) === undefined,
  );
  const networkNames = [...new Set(tunnels.map((t) => t.spec.networkRef.name))];
  if (networkNames.length !== 1)
    return refuse(
      'no_tunnel',
      networkNames.length === 0
        ? `no PeerTunnel selects pod ${id.pod}`
        : `tunnels select pod ${id.pod} for several networks (${networkNames.join(', ')})`,
    );
  const network = f.networks.find(
    (n) => n.metadata.namespace === id.namespace && n.metadata.name === networkNames[0],
  );
  if (network === undefined) return refuse('no_tunnel', `PeerNetwork ${networkNames[0]} does not exist`);
  if (network.spec.trust === undefined)
    return refuse(
      'network_open',
      `PeerNetwork ${networkNames[0]} has no spec.trust: an open network needs no credential`,
    );
  const expose = [...new Set(tunnels.flatMap((t) => (t.spec.expose ?? []).map((e) => e.name)))].sort();
  const ttl = network.spec.trust.credentialTTLSeconds ?? CREDENTIAL_TTL.default;
  const now = Math.floor(f.nowSeconds);
  return {
    kind: 'issue',
    claims: credentialClaims(
      {
        network: credentialNetworkName(network),
        cluster: f.cluster,
        namespace: id.namespace,
        serviceAccount: id.serviceAccount,
        peer: f.peer,
        expose,
      },
      now,
      ttl,
    ),
  };
}
