/**
 * Reads the sidecars' `/status`. Where a sidecar is reached is a function (`AdminAddressResolver`),
 * so tests whose pod runner runs sidecars on 127.0.0.1 can say so: by default the pod IP and the
 * sidecar's admin port; with `trustAnnotation` the pod's `peertunnel.io/admin-address` annotation
 * wins. That is off by default, because anyone who can create a pod could point the operator at
 * any address with it.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { parseSidecarReport, type SidecarReport } from '../../contracts/sidecar-status.js';
import { ADMIN_PORT_NAME } from '../render.js';

export const ADMIN_ADDRESS_ANNOTATION = 'peertunnel.io/admin-address';

/** `host:port` of a pod's sidecar admin server, or undefined when it cannot be reached. */
export type AdminAddressResolver = (pod: V1Pod) => string | undefined;

export function defaultAdminAddress(containerName: string, fallbackPort: number, trustAnnotation: boolean) {
  return (pod: V1Pod): string | undefined => {
    if (trustAnnotation) {
      const a = pod.metadata?.annotations?.[ADMIN_ADDRESS_ANNOTATION];
      if (a !== undefined && /^[0-9a-fA-F.:[\]]+:\d{1,5}$/.test(a)) return a;
    }
    const ip = pod.status?.podIP;
    if (ip === undefined || ip === '') return undefined;
    const sidecar = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
      (c) => c.name === containerName,
    );
    const port = sidecar?.ports?.find((p) => p.name === ADMIN_PORT_NAME)?.containerPort ?? fallbackPort;
    return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
  };
}

export type SidecarStatusFetcher = (pod: V1Pod) => Promise<SidecarReport | undefined>;

/**
 * GET http://<address>/status with a short timeout; undefined when unreachable or not JSON. A JSON
 * body that breaks the status contract throws its ContractError: the caller counts and logs it.
 */
export function httpSidecarStatus(resolve: AdminAddressResolver, timeoutMs = 2_000): SidecarStatusFetcher {
  return async (pod) => {
    const address = resolve(pod);
    if (address === undefined) return undefined;
    let body: unknown;
    try {
      const res = await fetch(`http://${address}/status`, { signal: AbortSignal.timeout(timeoutMs) });
      if (!res.ok) return undefined;
      body = await res.json();
    } catch {
      return undefined;
    }
    return parseSidecarReport(body);
  };
}
