/**
 * The operator's plain-HTTP endpoints: /metrics (Prometheus), /healthz (the process answers),
 * /readyz (caches synced and the webhook serving: only then may a Service send it admissions).
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from '../sidecar/logger.js';

export class HealthServer {
  private server?: Server;
  private boundPort?: number;

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly registry: Registry,
    private readonly notReady: () => string[],
    private readonly logger: Logger,
  ) {}

  get address(): string {
    return `${this.host}:${this.boundPort ?? this.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (code: number, type: string, body: string) =>
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
      if (path === '/metrics') {
        this.registry
          .metrics()
          .then((text) => send(200, this.registry.contentType, text))
          .catch((err: unknown) => send(500, 'text/plain', `${String(err)}\n`));
        return;
      }
      if (path === '/healthz' || path === '/livez') return send(200, 'text/plain', 'ok\n');
      if (path === '/readyz') {
        const reasons = this.notReady();
        return reasons.length === 0
          ? send(200, 'text/plain', 'ready\n')
          : send(503, 'text/plain', `not ready: ${reasons.join('; ')}\n`);
      }
      send(404, 'text/plain', 'not found: try /metrics /healthz /readyz\n');
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.host, port: this.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.port;
    this.logger.info(
      { event: 'health_listening', host: this.host, port: this.boundPort },
      'metrics and health listening',
    );
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
