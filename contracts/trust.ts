/**
 * Who may reach an exposed service (`expose[].allowFrom`) and what a node's /status says about
 * trust: the rule's shape and meaning, and the `trust` part of the status the operator will show.
 */
import type { CredentialClaims, CredentialRefusal } from './credential.js';

/** Matches any value of a field. */
export const ANY = '*';

/** One entry of `allowFrom`: each field a name or `*` (absent fields mean `*`). */
export interface AllowFromRule {
  cluster: string;
  namespace: string;
  serviceAccount: string;
}

/** Whether a credential's workload is one the rules allow (no rules: every credentialed member). */
export function allowFromMatches(
  rules: readonly AllowFromRule[] | undefined,
  claims: Pick<CredentialClaims, 'cluster' | 'namespace' | 'serviceAccount'>,
): boolean {
  if (rules === undefined) return true;
  const is = (rule: string, value: string) => rule === ANY || rule === value;
  return rules.some(
    (r) =>
      is(r.cluster, claims.cluster) &&
      is(r.namespace, claims.namespace) &&
      is(r.serviceAccount, claims.serviceAccount),
  );
}

/**
 * Where a refusal happened: `forward` (a provider this node would not use), `expose` (a stream
 * this node would not serve), `exchange` (a credential refused on arrival).
 */
export type TrustSide = 'forward' | 'expose' | 'exchange';

/** One refusal in /status (the newest MAX_RECENT_REFUSALS of them). */
export interface TrustRefusalRecord {
  /** ISO time. */
  at: string;
  side: TrustSide;
  peer: string;
  /** The service asked for or offered; null for an exchange. */
  service: string | null;
  reason: CredentialRefusal;
  /** The workload the peer's credential named, when it had a readable one. */
  cluster: string | null;
  namespace: string | null;
  serviceAccount: string | null;
}

/** `trust` in a sidecar's /status. */
export interface TrustStatus {
  /** `open`: no trust section, any swarm key holder may serve and reach any name. */
  mode: 'open' | 'credentialed';
  network: string | null;
  /** This node's own credential, as its peers see it. */
  credential: {
    cluster: string;
    namespace: string;
    serviceAccount: string;
    expose: string[];
    /** ISO time. */
    expires: string;
  } | null;
  trustedClusters: string[];
  /** Connected peers holding a credential this node accepts now. */
  credentialedPeers: number;
  refusals: TrustRefusalRecord[];
}
