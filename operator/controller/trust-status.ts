/**
 * The credential part of a PeerTunnel's status: the refusals its ready sidecars report in their
 * /status (`trust.refusals`), newest first, and their count for the REFUSED column. Only for a
 * network with spec.trust; an open network refuses no one (REFUSED `-`). Pure.
 */
import type { SidecarReport } from '../../contracts/sidecar-status.js';
import type { PeerNetwork, PeerTunnel, PeerTunnelStatus, TunnelTrustStatus } from '../../crds/schema.js';
import { MAX_STATUS_REFUSALS } from '../../crds/trust-schema.js';

type StatusRefusal = NonNullable<TunnelTrustStatus['refusals']>[number];

/** `status` with `trust` and `summary.refused` added, from the sidecars' reports by pod name. */
export function withTunnelTrust(
  status: PeerTunnelStatus,
  tunnel: PeerTunnel,
  network: PeerNetwork | undefined,
  reports: ReadonlyMap<string, SidecarReport>,
): PeerTunnelStatus {
  // Open network: the REFUSED column says "-" (nothing is checked), never an empty cell.
  if (network?.spec.trust === undefined) {
    return status.summary === undefined
      ? status
      : { ...status, summary: { ...status.summary, refused: '-' } };
  }
  // A sidecar may carry several tunnels: this one's refusals are those about its own names.
  const exposes = new Set((tunnel.spec.expose ?? []).map((e) => e.name));
  const forwards = new Set((tunnel.spec.forward ?? []).map((f) => f.name));
  const mine = (side: string, service: string | null) =>
    side === 'exchange' ||
    (service !== null && (side === 'expose' ? exposes.has(service) : forwards.has(service)));
  const all: StatusRefusal[] = [...reports].flatMap(([pod, r]) =>
    (r.trust?.refusals ?? [])
      .filter((x) => mine(x.side, x.service))
      .map((x) => {
        const out: StatusRefusal = { at: x.at, pod, side: x.side, reason: x.reason, peer: x.peer };
        if (x.service !== null) out.service = x.service;
        if (x.cluster !== null) out.cluster = x.cluster;
        if (x.namespace !== null) out.namespace = x.namespace;
        if (x.serviceAccount !== null) out.serviceAccount = x.serviceAccount;
        return out;
      }),
  );
  all.sort((a, b) => (a.at < b.at ? 1 : a.at > b.at ? -1 : a.pod < b.pod ? -1 : 1));
  const refusals = all.slice(0, MAX_STATUS_REFUSALS);
  return {
    ...status,
    trust: { refused: all.length, ...(refusals.length === 0 ? {} : { refusals }) },
    summary: { ...status.summary, refused: String(all.length) },
  };
}
