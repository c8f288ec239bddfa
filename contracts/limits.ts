/**
 * Size limits of what users configure, in one table: the node config's zod schema
 * (`sidecar/config/config.ts`), the CRDs' OpenAPI maxima (`crds/schema.ts`) and the operator's rendering
 * (`operator/inject/render.ts`) all read it, so a PeerTunnel the API server accepts renders a node config
 * the sidecar accepts. Every list is bounded: a config or an object cannot grow a node's work
 * without limit.
 */
export const LIMITS = {
  /** Node config `listen` addresses. */
  listen: 16,
  /** Announced addresses: the node config's `announce`, a PeerNetwork's `spec.relay.announce`. */
  announce: 16,
  /** Bootstrap peers of a node; a PeerNetwork's spec.bootstrap plus its relays, cut to this. */
  bootstrap: 64,
  publicRanges: 64,
  exposes: 64,
  forwards: 64,
  /** Relay reservations a sidecar holds at once. */
  relayReservations: 8,
  matchLabels: 64,
  matchExpressions: 32,
  expressionValues: 64,
  conditions: 16,
  /** Pods named in status.pods.missingSidecar; the count is in status.pods. */
  missingSidecar: 32,
  relayAddresses: 64,
  relayReplicas: 10,
  /** Trusted clusters of a node (inline and in its trust file together). */
  trustedClusters: 32,
  /** Peer IDs a node trusts without a credential (`trust.allowPeers`). */
  allowPeers: 256,
  /** Rules of one expose's `allowFrom`. */
  allowFrom: 32,
  /** Service names uncredentialed peers may serve and reach (`trust.uncredentialed`). */
  uncredentialed: 64,
} as const;
