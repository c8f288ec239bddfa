/**
 * The operator's plain-HTTP endpoints: /metrics (Prometheus), /healthz and /livez (the process
 * answers), /readyz (caches synced and the webhook serving: only then may a Service send it
 * admissions). The server, its limits and the shared routes are the sidecar admin's.
 */
import type { Registry } from 'prom-client';
import {
  type HttpRefusal,
  liveRoute,
  metricsRoute,
  readyRoute,
  SmallHttpServer,
} from '../sidecar/admin/http-server.js';
import type { Logger } from '../sidecar/node/logger.js';

export function healthServer(
  host: string,
  port: number,
  registry: Registry,
  notReady: () => string[],
  logger: Logger,
  onRefused: (reason: HttpRefusal) => void,
): SmallHttpServer {
  return new SmallHttpServer({
    name: 'health',
    host,
    port,
    routes: {
      '/metrics': metricsRoute(registry),
      '/healthz': liveRoute,
      '/livez': liveRoute,
      '/readyz': readyRoute(notReady),
    },
    logger,
    onRefused,
  });
}
