/**
 * The admission webhook: HTTPS, POST /mutate-pods with an AdmissionReview (v1) of a pod CREATE.
 * It copies the request's namespace into the pod (a pod being created often has none yet), runs
 * the pure `inject` against the informer caches, and answers with a JSONPatch or an unchanged
 * allow. It never refuses a pod: a pod the tunnels cannot serve is created without the sidecar,
 * with a warning the user sees in kubectl and a reason in the tunnel's status. Every replica
 * serves it; the certificate is swapped in place when the shared Secret changes. Other POST
 * routes share the server and its certificate (the credential issuer's `/credential`).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { V1Pod } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import {
  applyHttpLimits,
  CONNECTIONS_CHECK_INTERVAL_MS,
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
} from '../../sidecar/admin/http-server.js';
import type { Logger } from '../../sidecar/node/logger.js';
import { inject } from '../inject/inject.js';
import { SkipReason, type SkipReasonCode } from '../inject/reasons.js';
import type { InjectSettings } from '../inject/settings.js';
import type { OperatorMetrics } from '../metrics.js';
import type { CertBundle } from './certs.js';
import { WEBHOOK_PATH } from './configuration.js';

const MAX_BODY = 3 * 1024 * 1024;

/**
 * The API servers keep a few keep-alive connections each; a reviewed pod is at most MAX_BODY and
 * is answered in milliseconds, so these deadlines only ever close sockets that stall.
 */
export const WEBHOOK_HTTP_LIMITS: HttpLimits = {
  ...DEFAULT_HTTP_LIMITS,
  maxConnections: 256,
  keepAliveTimeoutMs: 60_000,
  idleTimeoutMs: 90_000,
};
/** A TLS client that has not finished its handshake by then is dropped (Node's default: 120 s). */
const HANDSHAKE_TIMEOUT_MS = 5_000;

/** Skips a user should hear about at `kubectl apply` time (the others are the normal case). */
const WARN_ON: ReadonlySet<SkipReasonCode> = new Set([
  SkipReason.HostNetwork,
  SkipReason.NetworkMissing,
  SkipReason.NetworkNotReady,
  SkipReason.ConflictingTunnels,
  SkipReason.PortConflict,
  SkipReason.InvalidConfig,
]);

export interface WebhookSources {
  tunnels(namespace: string): readonly PeerTunnel[];
  networks(namespace: string): readonly PeerNetwork[];
  settings(): InjectSettings;
}

export interface WebhookServerInit {
  host: string;
  port: number;
  /** SO_REUSEPORT: several processes on one host share the port (tests run two replicas so). */
  reusePort?: boolean;
  limits?: Partial<HttpLimits>;
  /** More POST handlers on the same server and certificate, by path (the credential issuer). */
  routes?: Readonly<Record<string, (req: IncomingMessage, res: ServerResponse) => void>>;
}

interface AdmissionReview {
  apiVersion?: string;
  kind?: string;
  request?: {
    uid?: string;
    kind?: { group?: string; version?: string; kind?: string };
    operation?: string;
    namespace?: string;
    object?: V1Pod;
    dryRun?: boolean;
  };
}

interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
}

export class WebhookServer {
  private server?: Server;
  private boundPort?: number;

  constructor(
    private readonly init: WebhookServerInit,
    private readonly sources: WebhookSources,
    private readonly metrics: OperatorMetrics,
    private readonly logger: Logger,
  ) {}

  get port(): number | undefined {
    return this.boundPort;
  }

  async start(bundle: CertBundle): Promise<void> {
    const server = createServer(
      {
        cert: bundle.certPem,
        key: bundle.keyPem,
        minVersion: 'TLSv1.2',
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        connectionsCheckingInterval: CONNECTIONS_CHECK_INTERVAL_MS,
      },
      (req, res) => {
        const path = (req.url ?? '/').split('?')[0] ?? '/';
        const route = this.init.routes?.[path];
        if (req.method === 'POST' && route !== undefined && Object.hasOwn(this.init.routes ?? {}, path)) {
          route(req, res);
          return;
        }
        if (req.method !== 'POST' || path !== WEBHOOK_PATH) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end(`POST ${WEBHOOK_PATH}\n`);
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        req.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) req.destroy();
          else chunks.push(c);
        });
        req.on('end', () => {
          const started = process.hrtime.bigint();
          const { body, result, reason } = this.review(Buffer.concat(chunks).toString('utf8'));
          res.writeHead(result === 'error' && body === undefined ? 400 : 200, {
            'content-type': 'application/json',
          });
          res.end(body ?? '{"error":"expected an AdmissionReview"}');
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          this.metrics.webhookRequests.inc({ result, reason });
          this.metrics.webhookSeconds.observe({ result }, seconds);
        });
        req.on('error', () => {});
      },
    );
    // A client that drops mid-handshake must not take the server down.
    server.on('tlsClientError', () => {});
    const limits = { ...WEBHOOK_HTTP_LIMITS, ...this.init.limits };
    applyHttpLimits(server, limits, (remoteAddress) => {
      this.metrics.httpRefused.inc({ server: 'webhook', reason: 'connection_limit' });
      this.logger.warn(
        { event: 'webhook_connection_dropped', remoteAddress, maxConnections: limits.maxConnections },
        'connection refused: too many open connections',
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(
        { host: this.init.host, port: this.init.port, reusePort: this.init.reusePort === true },
        () => {
          server.off('error', reject);
          resolve();
        },
      );
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.init.port;
    this.logger.info(
      { event: 'webhook_listening', host: this.init.host, port: this.boundPort },
      'admission webhook listening',
    );
  }

  /** Swaps the serving certificate for new connections. */
  setCertificate(bundle: CertBundle): void {
    this.server?.setSecureContext({ cert: bundle.certPem, key: bundle.keyPem, minVersion: 'TLSv1.2' });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // In-flight reviews finish; idle keep-alive connections go now.
      server.closeIdleConnections();
    });
  }

  /** Pure apart from logging: an AdmissionReview in, the response body out. */
  review(text: string): {
    body?: string;
    result: 'injected' | 'skipped' | 'error';
    reason: string;
  } {
    let review: AdmissionReview;
    try {
      review = JSON.parse(text) as AdmissionReview;
    } catch {
      return { result: 'error', reason: 'BadRequest' };
    }
    const req = review.request;
    if (req?.uid === undefined) return { result: 'error', reason: 'BadRequest' };
    const respond = (response: AdmissionResponse) =>
      JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response });
    const pod = req.object;
    if (req.operation !== 'CREATE' || req.kind?.kind !== 'Pod' || pod === undefined) {
      return { body: respond({ uid: req.uid, allowed: true }), result: 'skipped', reason: 'NotPodCreate' };
    }
    const namespace = req.namespace ?? pod.metadata?.namespace ?? '';
    const withNs: V1Pod = { ...pod, metadata: { ...(pod.metadata ?? {}), namespace } };
    try {
      const r = inject(
        withNs,
        this.sources.tunnels(namespace),
        this.sources.networks(namespace),
        this.sources.settings(),
      );
      const podName = pod.metadata?.name ?? `${pod.metadata?.generateName ?? ''}*`;
      if (r.kind === 'skipped') {
        this.logger.debug({ event: 'inject_skipped', namespace, pod: podName, reason: r.reason }, r.message);
        const warnings = WARN_ON.has(r.reason)
          ? [`peertunnel: sidecar not injected (${r.reason}): ${r.message}`]
          : undefined;
        return {
          body: respond({ uid: req.uid, allowed: true, warnings }),
          result: 'skipped',
          reason: r.reason,
        };
      }
      this.logger.info(
        {
          event: 'inject',
          namespace,
          pod: podName,
          tunnels: r.tunnels,
          network: r.network,
          hash: r.hash,
          dryRun: req.dryRun === true,
        },
        'sidecar injected',
      );
      return {
        body: respond({
          uid: req.uid,
          allowed: true,
          patchType: 'JSONPatch',
          patch: Buffer.from(JSON.stringify(r.patch)).toString('base64'),
        }),
        result: 'injected',
        reason: r.replaced ? 'Replaced' : 'Added',
      };
    } catch (err) {
      // A bug must not block pod creation: allow unchanged, and make it loud.
      this.logger.error(
        { event: 'inject_failed', namespace, err: String(err) },
        'injection failed; pod allowed unchanged',
      );
      return {
        body: respond({
          uid: req.uid,
          allowed: true,
          warnings: [`peertunnel: sidecar not injected: internal error: ${String(err)}`],
        }),
        result: 'error',
        reason: 'InternalError',
      };
    }
  }
}
