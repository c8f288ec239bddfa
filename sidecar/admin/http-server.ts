/**
 * The small plain-HTTP server both the sidecar (admin: /metrics /livez /readyz /status) and the
 * operator (/metrics /healthz /readyz) run, and the limits every HTTP server of the project gets
 * (the operator's HTTPS webhook included): a connection cap, header and request deadlines, bounded
 * keep-alive. Without them one client holding idle sockets takes the server from the probes and
 * Prometheus. No Kubernetes import here: the sidecar loads it.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type Server as HttpsServer, Server as HttpsServerClass } from 'node:https';
import type { Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../node/logger.js';

export interface HttpLimits {
  /** Sockets open at once; one more is closed at accept and counted. */
  maxConnections: number;
  /** From a connection's (or request's) start until its headers are complete. */
  headersTimeoutMs: number;
  /** From a request's start until it is fully received. */
  requestTimeoutMs: number;
  /** How long an idle keep-alive socket is kept between requests. */
  keepAliveTimeoutMs: number;
  /** Requests one socket may carry before it is closed. */
  maxRequestsPerSocket: number;
  /** A socket with no traffic at all for this long is closed (a stalled reader included). */
  idleTimeoutMs: number;
}

/** Enough for Prometheus, the kubelet's probes and an operator; far below what exhausts a pod. */
export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  maxConnections: 64,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxRequestsPerSocket: 1_000,
  idleTimeoutMs: 30_000,
};

/** Why a request or connection was turned away; a fixed set so a metric label stays bounded. */
export type HttpRefusal = 'connection_limit' | 'status_forbidden' | 'status_bad_token';

/**
 * Puts `limits` on a node:http or node:https server. `onDrop` hears of each connection closed
 * at accept for the cap. Header/request deadlines are checked every second rather than Node's
 * default 30 s, so an idle socket cannot outlive its deadline by much.
 */
export function applyHttpLimits(
  server: Server | HttpsServer,
  limits: HttpLimits,
  onDrop: (remoteAddress: string | undefined) => void,
): void {
  server.maxConnections = limits.maxConnections;
  server.headersTimeout = limits.headersTimeoutMs;
  server.requestTimeout = limits.requestTimeoutMs;
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  server.setTimeout(limits.idleTimeoutMs, (socket) => socket.destroy());
  server.on('drop', (data?: { remoteAddress?: string }) => onDrop(data?.remoteAddress));
  // Node's header deadline starts with the first byte; a socket that sends none would be held
  // until the idle timeout. It gets the header deadline for its first request instead. (On https
  // the handshake has its own deadline; the socket the requests arrive on is the TLS one.)
  const firstRequest = new WeakMap<Socket, NodeJS.Timeout>();
  const opened = server instanceof HttpsServerClass ? 'secureConnection' : 'connection';
  server.on(opened, (socket: Socket) => {
    const timer = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
    timer.unref();
    firstRequest.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('request', (req: IncomingMessage) => {
    clearTimeout(firstRequest.get(req.socket));
    firstRequest.delete(req.socket);
  });
}

/** The interval of Node's header/request deadline check; a creation option of the server. */
export const CONNECTIONS_CHECK_INTERVAL_MS = 1_000;

export interface Reply {
  code: number;
  type: string;
  body: string;
  headers?: Record<string, string>;
}

/** A route answers a GET or HEAD; it may look at the request (its socket, its headers). */
export type Route = (req: IncomingMessage) => Reply | Promise<Reply>;

export const text = (code: number, body: string, headers?: Record<string, string>): Reply => ({
  code,
  type: 'text/plain',
  body,
  headers,
});

/** /metrics of a prom-client registry. */
export const metricsRoute =
  (registry: Registry): Route =>
  async () => ({ code: 200, type: registry.contentType, body: await registry.metrics() });

/** /readyz: 200 `ready`, or 503 with the reasons. */
export const readyRoute =
  (notReady: () => string[]): Route =>
  () => {
    const reasons = notReady();
    return reasons.length === 0 ? text(200, 'ready\n') : text(503, `not ready: ${reasons.join('; ')}\n`);
  };

export const liveRoute: Route = () => text(200, 'ok\n');

export interface SmallHttpServerInit {
  /** Names the server in its log lines (`<name>_listening`, `<name>_connection_dropped`). */
  name: string;
  host: string;
  port: number;
  routes: Readonly<Record<string, Route>>;
  limits?: Partial<HttpLimits>;
  logger: Logger;
  /** Hears of every connection or request refused by the server itself. */
  onRefused?: (reason: HttpRefusal) => void;
}

/** A GET/HEAD-only server of a few fixed routes, with `DEFAULT_HTTP_LIMITS` unless told otherwise. */
export class SmallHttpServer {
  private server?: Server;
  private boundPort?: number;

  constructor(private readonly init: SmallHttpServerInit) {}

  get port(): number | undefined {
    return this.boundPort;
  }

  get address(): string {
    return `${this.init.host}:${this.boundPort ?? this.init.port}`;
  }

  async start(): Promise<void> {
    const { init } = this;
    const limits = { ...DEFAULT_HTTP_LIMITS, ...init.limits };
    const known = Object.keys(init.routes).join(' ');
    const server = createServer(
      { connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS },
      (req: IncomingMessage, res: ServerResponse) => {
        const send = (r: Reply) => {
          res.writeHead(r.code, { 'content-type': r.type, 'cache-control': 'no-store', ...r.headers });
          res.end(req.method === 'HEAD' ? undefined : r.body);
        };
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          send(text(405, 'method not allowed\n'));
          return;
        }
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        const route = Object.hasOwn(init.routes, path) ? init.routes[path] : undefined;
        if (route === undefined) {
          send(text(404, `not found: try ${known}\n`));
          return;
        }
        Promise.resolve()
          .then(() => route(req))
          .then(send, (err: unknown) => send(text(500, `${String(err)}\n`)));
      },
    );
    applyHttpLimits(server, limits, (remoteAddress) => {
      init.onRefused?.('connection_limit');
      init.logger.warn(
        { event: `${init.name}_connection_dropped`, remoteAddress, maxConnections: limits.maxConnections },
        'connection refused: too many open connections',
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: init.host, port: init.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : init.port;
    init.logger.info(
      { event: `${init.name}_listening`, host: init.host, port: this.boundPort },
      `${init.name} HTTP listening`,
    );
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
