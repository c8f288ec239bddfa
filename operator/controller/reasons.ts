/**
 * Reasons of the Ready condition and of events. Stable codes: users, alerts and tests match them,
 * so rename none. Each has a message that says what to do (built where the facts are known).
 */

export const TunnelReason = {
  /** Every selected pod carries a ready sidecar and every forward sees a provider. */
  Ready: 'Ready',
  /** spec.networkRef names a PeerNetwork that does not exist (or is being deleted). */
  NetworkNotFound: 'NetworkNotFound',
  /** The network's swarm-key Secret, or its key, is missing: sidecars cannot start. */
  SwarmKeySecretMissing: 'SwarmKeySecretMissing',
  /** The network has no bootstrap peers yet (no spec.bootstrap, relay addresses not published). */
  NetworkNotReady: 'NetworkNotReady',
  /** The selector matches no pod of the namespace. */
  NoPodsSelected: 'NoPodsSelected',
  /** Selected pods were created without the sidecar (before the tunnel, or while the webhook was down). */
  PodsMissingSidecar: 'PodsMissingSidecar',
  /** Injected sidecars that are not ready (starting, crashing, or not connected to the network). */
  SidecarsNotReady: 'SidecarsNotReady',
  /** The operator cannot read any ready sidecar's /status (a NetworkPolicy, say). */
  SidecarStatusUnavailable: 'SidecarStatusUnavailable',
  /** A forward sees no pod exposing its name. */
  NoProviders: 'NoProviders',
  /** Refused: spec.selector names no label (it would inject every pod of the namespace). */
  SelectorSelectsEverything: 'SelectorSelectsEverything',
  /** Refused: an expose host is not loopback and the namespace may not expose other hosts. */
  RemoteExposeNotAllowed: 'RemoteExposeNotAllowed',
} as const;
export type TunnelReasonCode = (typeof TunnelReason)[keyof typeof TunnelReason];

export const NetworkReason = {
  Ready: 'Ready',
  /** spec.swarmKeySecretRef names a Secret that does not exist. */
  SwarmKeySecretMissing: 'SwarmKeySecretMissing',
  /** The Secret exists but lacks the key, or the value is empty. */
  SwarmKeyMissing: 'SwarmKeyMissing',
  /** spec.nextSwarmKeySecretRef names a Secret, or a key, that does not exist: members cannot start. */
  NextSwarmKeyMissing: 'NextSwarmKeyMissing',
  /** spec.relay.enabled, but no relay address is known yet (a LoadBalancer without an address, say). */
  RelaysPending: 'RelaysPending',
  /** Creating the relay's Deployment, Service or identity failed (RBAC, quota). */
  RelayError: 'RelayError',
  /** An object with a relay's name exists that this network did not create (no owner reference to it). */
  RelayObjectNotOwned: 'RelayObjectNotOwned',
} as const;
export type NetworkReasonCode = (typeof NetworkReason)[keyof typeof NetworkReason];

/** Event-only reasons (conditions use the ones above). */
export const EventReason = {
  /** A pod still runs the sidecar of a PeerTunnel that was deleted. */
  TunnelDeleted: 'TunnelDeleted',
  /** The operator created or updated a relay's Deployment, Service or identity. */
  RelayUpdated: 'RelayUpdated',
} as const;
