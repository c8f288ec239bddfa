/**
 * The node's admin HTTP: /metrics, /livez, /readyz for Prometheus and the kubelet's probes on
 * whatever address it listens on; /status (peer IDs, other sites' addresses, relays, observed NAT
 * mappings) only to a loopback caller or one that shows the status token. The node keeps only the
 * token's SHA-256 (the operator renders it into the config) and compares hashes in constant time.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../node/logger.js';
import {
  type HttpLimits,
  type HttpRefusal,
  liveRoute,
  metricsRoute,
  type Reply,
  readyRoute,
  SmallHttpServer,
  text,
} from './http-server.js';

export interface AdminSource {
  registry: Registry;
  /** Why the node is not ready, or an empty list when it is. */
  notReadyReasons(): string[];
  status(): unknown;
}

export interface AdminInit {
  /** HOST:PORT */
  listen: string;
  /** Hex SHA-256 of the bearer token that may read /status from off the host. */
  statusTokenSha256?: string;
  limits?: Partial<HttpLimits>;
  onRefused?: (reason: HttpRefusal) => void;
  /** Whether a caller's address counts as this host's own. @default isLoopback */
  isLocalCaller?: (remoteAddress: string | undefined) => boolean;
}

/** 127.0.0.0/8, ::1 and their IPv4-mapped form. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  return a === '::1' || (isIP(a) === 4 && a.startsWith('127.'));
}

const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Whether `authorization` carries a bearer token whose SHA-256 is `expected` (32 bytes). */
export function bearerMatches(authorization: string | undefined, expected: Buffer): boolean {
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(authorization ?? '');
  // Hash even when absent, so a missing header takes as long as a wrong one.
  const got = sha256(m?.[1] ?? '');
  return timingSafeEqual(got, expected) && m !== null;
}

export class AdminServer {
  private readonly server: SmallHttpServer;
  private readonly tokenHash?: Buffer;

  constructor(
    private readonly source: AdminSource,
    private readonly init: AdminInit,
    private readonly logger: Logger,
  ) {
    const i = init.listen.lastIndexOf(':');
    this.tokenHash =
      init.statusTokenSha256 === undefined ? undefined : Buffer.from(init.statusTokenSha256, 'hex');
    this.server = new SmallHttpServer({
      name: 'admin',
      host: init.listen.slice(0, i).replace(/^\[|\]$/g, ''),
      port: Number(init.listen.slice(i + 1)),
      routes: {
        '/metrics': metricsRoute(source.registry),
        '/livez': liveRoute,
        '/readyz': readyRoute(() => source.notReadyReasons()),
        '/status': (req) => this.status(req),
      },
      limits: init.limits,
      logger,
      onRefused: init.onRefused,
    });
  }

  get port(): number | undefined {
    return this.server.port;
  }

  start(): Promise<void> {
    return this.server.start();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  private status(req: IncomingMessage): Reply {
    const remoteAddress = req.socket.remoteAddress;
    if (!(this.init.isLocalCaller ?? isLoopback)(remoteAddress)) {
      const auth = req.headers.authorization;
      const ok = this.tokenHash !== undefined && bearerMatches(auth, this.tokenHash);
      if (!ok) {
        const reason: HttpRefusal = auth === undefined ? 'status_forbidden' : 'status_bad_token';
        this.init.onRefused?.(reason);
        this.logger.warn(
          { event: 'admin_status_refused', reason, remoteAddress },
          '/status refused: not loopback and no valid token',
        );
        return auth === undefined
          ? text(403, '/status answers loopback callers or a bearer token\n')
          : text(401, 'invalid token\n', { 'www-authenticate': 'Bearer' });
      }
    }
    return {
      code: 200,
      type: 'application/json',
      body: `${JSON.stringify(this.source.status(), null, 2)}\n`,
    };
  }
}
