/**
 * Admin HTTP: /metrics (Prometheus), /livez, /readyz, /status (JSON). Plain node:http: four
 * routes do not justify a framework in the sidecar.
 */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './logger.js';

export interface AdminSource {
  registry: Registry;
  /** Why the node is not ready, or an empty list when it is. */
  notReadyReasons(): string[];
  status(): unknown;
}

export class AdminServer {
  private server?: Server;
  private boundPort?: number;

  constructor(
    private readonly source: AdminSource,
    private readonly listen: string,
    private readonly logger: Logger,
  ) {}

  get port(): number | undefined {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const i = this.listen.lastIndexOf(':');
    const host = this.listen.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(this.listen.slice(i + 1));
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (code: number, type: string, body: string) => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return send(405, 'text/plain', 'method not allowed\n');
      switch (path) {
        case '/metrics':
          this.source.registry
            .metrics()
            .then((text) => send(200, this.source.registry.contentType, text))
            .catch((err: unknown) => send(500, 'text/plain', `${String(err)}\n`));
          return;
        case '/livez':
          return send(200, 'text/plain', 'ok\n');
        case '/readyz': {
          const reasons = this.source.notReadyReasons();
          return reasons.length === 0
            ? send(200, 'text/plain', 'ready\n')
            : send(503, 'text/plain', `not ready: ${reasons.join('; ')}\n`);
        }
        case '/status':
          return send(200, 'application/json', `${JSON.stringify(this.source.status(), null, 2)}\n`);
        default:
          return send(404, 'text/plain', 'not found: try /metrics /livez /readyz /status\n');
      }
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : port;
    this.logger.info({ event: 'admin_listening', host, port: this.boundPort }, 'admin HTTP listening');
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
