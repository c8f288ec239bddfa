/**
 * Why a pod did not get a (new) sidecar. Codes are stable: they feed events, logs and the
 * `reason` label of the webhook metrics, so rename none of them.
 */
export const SkipReason = {
  /** The pod has no namespace (the webhook copies it from the AdmissionRequest first). */
  NamespaceUnknown: 'NamespaceUnknown',
  /** kube-system, the operator's own namespace, or one listed in the settings. */
  NamespaceExcluded: 'NamespaceExcluded',
  /** The pod carries `peertunnel.io/inject: "false"` (annotation or label). */
  OptedOut: 'OptedOut',
  /** Host-network pods share the node's ports; a sidecar there would collide across pods. */
  HostNetwork: 'HostNetwork',
  /** No PeerTunnel of the namespace selects the pod. */
  NoMatchingTunnel: 'NoMatchingTunnel',
  /** The pod already carries the sidecar this webhook would inject (reinvocation, or a retry). */
  AlreadyInjected: 'AlreadyInjected',
  /** The PeerNetwork a selecting tunnel names does not exist. */
  NetworkMissing: 'NetworkMissing',
  /** The network has no bootstrap peers yet (no spec.bootstrap, relay addresses not published). */
  NetworkNotReady: 'NetworkNotReady',
  /** Tunnels that select the pod disagree: other networks, or one name with other ports. */
  ConflictingTunnels: 'ConflictingTunnels',
  /** A forward or the sidecar itself would listen on a port that is already taken in the pod. */
  PortConflict: 'PortConflict',
  /** The rendered node config does not pass the sidecar's own validation. */
  InvalidConfig: 'InvalidConfig',
  /** The only tunnels selecting the pod have an empty selector (one that selects every pod). */
  SelectorSelectsEverything: 'SelectorSelectsEverything',
  /** The only tunnels selecting the pod expose a non-loopback host the namespace may not reach. */
  RemoteExposeNotAllowed: 'RemoteExposeNotAllowed',
} as const;

export type SkipReasonCode = (typeof SkipReason)[keyof typeof SkipReason];

/** A reason with what a user needs to act on it. */
export interface Skip {
  reason: SkipReasonCode;
  message: string;
}
