/**
 * A swarm-key rollover's progress in a PeerNetwork's status (docs/architecture.md, Swarm-key
 * rollover), as a pure function of what the network's ready sidecars report; and the reports
 * gathered. The old key may go once every reporting sidecar holds the next key and none of their
 * connections uses the current one.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { ContractError } from '../../contracts/errors.js';
import type { SidecarReport } from '../../contracts/sidecar-status.js';
import type { PeerNetwork, PeerNetworkStatus } from '../../crds/schema.js';
import type { ReconcileContext } from './context.js';
import { sidecarReady, tunnelsOfPod } from './status.js';

export type SwarmKeyRollover = NonNullable<PeerNetworkStatus['swarmKeyRollover']>;

export function computeRollover(reports: Iterable<SidecarReport>): SwarmKeyRollover {
  const r: SwarmKeyRollover = {
    sidecarsReporting: 0,
    sidecarsWithNextKey: 0,
    connectionsOnCurrentKey: 0,
    connectionsOnNextKey: 0,
    oldKeyInUse: true,
  };
  for (const report of reports) {
    r.sidecarsReporting++;
    // A sidecar that does not say (a version before the rollover) holds no next key.
    if (report.swarmKey?.next === true) r.sidecarsWithNextKey++;
    r.connectionsOnCurrentKey += report.swarmKey?.connections.current ?? 0;
    r.connectionsOnNextKey += report.swarmKey?.connections.next ?? 0;
  }
  r.oldKeyInUse =
    r.sidecarsReporting === 0 || r.sidecarsWithNextKey < r.sidecarsReporting || r.connectionsOnCurrentKey > 0;
  return r;
}

/** The reports of the ready sidecars of `network`'s tunnels; unreadable ones are left out, and counted. */
export async function networkReports(ctx: ReconcileContext, network: PeerNetwork): Promise<SidecarReport[]> {
  const namespace = network.metadata.namespace ?? '';
  const tunnels = new Set(
    ctx.caches.tunnels
      .list(namespace)
      .filter((t) => t.spec.networkRef.name === network.metadata.name)
      .map((t) => t.metadata.name ?? ''),
  );
  const pods = ctx.caches.pods
    .list(namespace)
    .filter(
      (p: V1Pod) =>
        tunnelsOfPod(p, ctx.settings.containerName).some((t) => tunnels.has(t)) &&
        sidecarReady(p, ctx.settings.containerName),
    );
  const out: SidecarReport[] = [];
  await Promise.all(
    pods.map(async (p) => {
      try {
        const r = await ctx.sidecarStatus(p);
        if (r !== undefined) out.push(r);
      } catch (err) {
        if (!(err instanceof ContractError)) throw err;
        ctx.metrics.sidecarStatusInvalid.inc();
      }
    }),
  );
  return out;
}
