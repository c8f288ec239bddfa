/**
 * What a PeerTunnel may ask for, whoever may create one in its namespace: a selector that names
 * at least one label (an empty one would inject every pod of the namespace), and expose targets
 * on loopback unless the operator lets the namespace reach other hosts (the setting
 * allowRemoteExposeNamespaces); link-local never. The CRD refuses most of this at admission; the
 * operator checks again for objects stored before those rules, and says why in the status. Pure.
 */
import type { PeerTunnel } from '../../crds/schema.js';
import { exposeHostProblem, isLoopbackHost } from '../../sidecar/config/address-check.js';
import { type Skip, SkipReason } from './reasons.js';

export function tunnelPolicyProblem(
  tunnel: PeerTunnel,
  allowRemoteExposeNamespaces: readonly string[],
): Skip | undefined {
  const name = tunnel.metadata.name ?? '?';
  const namespace = tunnel.metadata.namespace ?? '';
  const sel = tunnel.spec.selector;
  if (Object.keys(sel?.matchLabels ?? {}).length === 0 && (sel?.matchExpressions ?? []).length === 0) {
    return {
      reason: SkipReason.SelectorSelectsEverything,
      message: `PeerTunnel ${name}: spec.selector names no label, so it would select every pod of namespace ${namespace}; the operator injects none: name at least one label in matchLabels or matchExpressions.`,
    };
  }
  for (const [i, e] of (tunnel.spec.expose ?? []).entries()) {
    const host = e.host ?? '127.0.0.1';
    const never = exposeHostProblem(host);
    if (never !== undefined) {
      return {
        reason: SkipReason.RemoteExposeNotAllowed,
        message: `PeerTunnel ${name}: spec.expose[${i}].host ${host}: ${never}.`,
      };
    }
    if (!isLoopbackHost(host) && !allowRemoteExposeNamespaces.includes(namespace)) {
      return {
        reason: SkipReason.RemoteExposeNotAllowed,
        message: `PeerTunnel ${name}: spec.expose[${i}].host ${host} is not loopback, and namespace ${namespace} may not expose other hosts: the operator's allowRemoteExposeNamespaces (Helm value operator.allowRemoteExposeNamespaces) must list it. The operator injects no pod for this tunnel.`,
      };
    }
  }
  return undefined;
}
