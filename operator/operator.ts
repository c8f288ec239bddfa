/**
 * One operator replica: shared informers, the webhook (every replica), leader election, and the
 * controllers (the leader only), with metrics, health and the credential issuer. `Operator.start` brings them up in an
 * order where each finds what it needs; `stop` takes them down in reverse, releasing the Lease
 * only after the controllers have stopped.
 */
import { hostname } from 'node:os';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import type { PeerNetwork, PeerTunnel } from '../crds/schema.js';
import type { SmallHttpServer } from '../sidecar/admin/http-server.js';
import type { Logger } from '../sidecar/node/logger.js';
import type { Caches, ReconcileContext } from './controller/context.js';
import { Controllers, type Informers } from './controller/controllers.js';
import { ApiEventRecorder } from './controller/events.js';
import { ResilientInformer } from './controller/informer.js';
import { LeaderElector } from './controller/leader.js';
import {
  defaultAdminAddress,
  httpSidecarStatus,
  type SidecarStatusFetcher,
} from './controller/sidecar-client.js';
import { isActivePod, tunnelsOfPod } from './controller/status.js';
import { type CredentialOptions, prepareCredentials } from './credentials/setup.js';
import { healthServer } from './health.js';
import { type InjectSettings, type InjectSettingsInput, injectSettings } from './inject/settings.js';
import { KubeClient, type PartialObjectMetadata, paths } from './kube/client.js';
import { ensureStatusToken, tokenSha256 } from './kube/status-token.js';
import { createOperatorMetrics, type OperatorMetrics } from './metrics.js';
import type { CertBundle } from './webhook/certs.js';
import { applyWebhookConfiguration, type WebhookConfigInit } from './webhook/configuration.js';
import { WebhookServer } from './webhook/server.js';
import { ensureWebhookSecret } from './webhook/tls-secret.js';

export interface OperatorOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** Settings of injection; nativeSidecars 'auto' asks the server's version. */
  settings: Omit<InjectSettingsInput, 'nativeSidecars'> & { nativeSidecars: boolean | 'auto' };
  identity?: string;
  health: { host: string; port: number };
  webhook: {
    host: string;
    port: number;
    reusePort?: boolean;
    secretName: string;
    /** Names the serving certificate must cover. */
    hosts: string[];
    /** Manage the MutatingWebhookConfiguration (undefined: leave it to someone else, e.g. Helm + cert-manager). */
    configuration?: Omit<WebhookConfigInit, 'caPem' | 'operatorNamespace' | 'excludedNamespaces'>;
    /** How often the shared Secret is looked at again (rotation by another replica). @default 60 s */
    refreshMs?: number;
  };
  leader: { leaseName?: string; leaseDurationMs?: number; renewDeadlineMs?: number; retryPeriodMs?: number };
  statusIntervalMs?: number;
  /** Secret in the operator's namespace holding the sidecars' status token. @default peertunnel-status-token */
  statusTokenSecret?: string;
  networkResyncMs?: number;
  /** Trust pods' peertunnel.io/admin-address annotation (tests whose sidecars run on 127.0.0.1). */
  trustAdminAddressAnnotation?: boolean;
  /**
   * Workload credentials: this cluster's name, the Secret of its signing key (created when
   * missing, never replaced) and the URL sidecars reach `POST /credential` at. Undefined: none.
   */
  credentials?: CredentialOptions;
  /** Replaces the HTTP /status fetcher (tests). */
  sidecarStatus?: SidecarStatusFetcher;
  now?: () => Date;
}

export class Operator {
  readonly registry = new Registry();
  readonly metrics: OperatorMetrics;
  readonly client: KubeClient;
  readonly identity: string;
  settings?: InjectSettings;
  private informers?: Informers;
  private webhook?: WebhookServer;
  private health?: SmallHttpServer;
  private elector?: LeaderElector;
  private controllers?: Controllers;
  private refreshTimer?: NodeJS.Timeout;
  private caPem = '';
  private certPem = '';
  private stopped = false;
  private readonly injectedSource: { injectedPods?: () => number } = {};

  constructor(private readonly o: OperatorOptions) {
    this.client = new KubeClient(o.kubeConfig);
    this.metrics = createOperatorMetrics(this.registry, this.injectedSource);
    this.identity = o.identity ?? `${hostname()}-${process.pid}`;
  }

  get healthAddress(): string | undefined {
    return this.health?.address;
  }

  get webhookPort(): number | undefined {
    return this.webhook?.port;
  }
  get isLeader(): boolean {
    return this.elector?.isLeader ?? false;
  }

  async start(): Promise<void> {
    const { o } = this;
    const log = o.logger;
    // Health first: a probe must get an answer (503) while the rest comes up.
    this.health = healthServer(
      o.health.host,
      o.health.port,
      this.registry,
      () => this.notReady(),
      log,
      (reason) => this.metrics.httpRefused.inc({ server: 'health', reason }),
    );
    await this.health.start();

    let native = o.settings.nativeSidecars;
    if (native === 'auto') {
      const v = await this.client.serverVersion();
      // Native sidecars: beta and on by default from 1.29, GA in 1.33.
      native = v.major > 1 || (v.major === 1 && v.minor >= 29);
      log.info(
        { event: 'server_version', version: v.gitVersion, nativeSidecars: native },
        'API server version',
      );
    }
    const ns = o.settings.operatorNamespace;
    const statusToken = await ensureStatusToken(
      this.client,
      ns,
      o.statusTokenSecret ?? 'peertunnel-status-token',
      log,
    );
    // The webhook's certificate first: sidecars of credentialed networks are told its CA.
    const bundle = await ensureWebhookSecret(this.client, ns, o.webhook.secretName, o.webhook.hosts, log);
    const { client, metrics } = this;
    const credentials = await prepareCredentials(o.credentials, {
      client,
      namespace: ns,
      caPem: bundle.caPem,
      metrics,
      logger: log,
    });
    const settings = injectSettings({
      ...o.settings,
      nativeSidecars: native,
      statusTokenSha256: tokenSha256(statusToken),
      ...(credentials === undefined ? {} : { credentials: credentials.settings }),
    });
    this.settings = settings;

    const components = { kubeConfig: o.kubeConfig, client: this.client, metrics: this.metrics, logger: log };
    const informers: Informers = {
      tunnels: new ResilientInformer<PeerTunnel>(components, 'peertunnels', paths.tunnels()),
      networks: new ResilientInformer<PeerNetwork>(components, 'peernetworks', paths.networks()),
      pods: new ResilientInformer<V1Pod>(components, 'pods', paths.pods()),
      secrets: new ResilientInformer<PartialObjectMetadata>(components, 'secrets', paths.secrets(), {
        metadataOnly: true,
      }),
    };
    this.informers = informers;
    this.injectedSource.injectedPods = () =>
      informers.pods
        .list()
        .filter((p) => isActivePod(p) && tunnelsOfPod(p, settings.containerName).length > 0).length;
    await Promise.all(Object.values(informers).map((i: ResilientInformer<never>) => i.start()));

    // The webhook (and the credential issuer on the same server): server, configuration.
    const sources = {
      tunnels: (namespace: string) => informers.tunnels.list(namespace),
      networks: (namespace: string) => informers.networks.list(namespace),
      allowRemoteExposeNamespaces: settings.allowRemoteExposeNamespaces,
    };
    const routes = credentials?.routes(sources);
    this.webhook = new WebhookServer(
      { host: o.webhook.host, port: o.webhook.port, reusePort: o.webhook.reusePort, routes },
      { ...sources, settings: () => settings },
      this.metrics,
      log,
    );
    await this.webhook.start(bundle);
    this.certPem = bundle.certPem;
    await this.applyConfiguration(bundle);
    this.scheduleRefresh();

    // Controllers on the leader only.
    const caches: Caches = informers;
    const ctx: ReconcileContext = {
      client: this.client,
      caches,
      events: new ApiEventRecorder(this.client, this.identity, log, o.now),
      metrics: this.metrics,
      logger: log,
      settings,
      sidecarStatus:
        o.sidecarStatus ??
        httpSidecarStatus({
          resolve: defaultAdminAddress(
            settings.containerName,
            settings.adminPort,
            o.trustAdminAddressAnnotation === true,
          ),
          token: () => statusToken,
          metrics: this.metrics,
          logger: log,
        }),
      now: o.now ?? (() => new Date()),
      statusIntervalMs: o.statusIntervalMs ?? 30_000,
      networkResyncMs: o.networkResyncMs ?? 300_000,
    };
    this.metrics.leader.set(0);
    this.elector = new LeaderElector(
      { namespace: settings.operatorNamespace, identity: this.identity, ...o.leader, now: o.now },
      this.client,
      {
        onStartedLeading: () => {
          this.controllers = new Controllers(ctx, informers);
          this.controllers.start();
          this.metrics.leader.set(1);
        },
        onStoppedLeading: async () => {
          this.metrics.leader.set(0);
          const c = this.controllers;
          this.controllers = undefined;
          await c?.stop();
        },
      },
      log,
    );
    this.elector.start();
    log.info(
      { event: 'operator_started', identity: this.identity, webhookPort: this.webhook.port },
      'operator started',
    );
  }

  /** Graceful: controllers stop, the Lease is released, the webhook finishes what it has, caches stop. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.refreshTimer);
    await this.elector?.stop();
    await this.controllers?.stop();
    await this.webhook?.stop();
    await Promise.all(Object.values(this.informers ?? {}).map((i: ResilientInformer<never>) => i.stop()));
    await this.health?.stop();
    this.o.logger.info({ event: 'operator_stopped', identity: this.identity }, 'operator stopped');
  }

  private notReady(): string[] {
    const informers = Object.values(this.informers ?? {}) as ResilientInformer<never>[];
    const r = informers.filter((i) => !i.synced).map((i) => `${i.resource} cache not synced`);
    if (this.informers === undefined) r.push('starting');
    if (this.webhook?.port === undefined) r.push('webhook not serving');
    return r;
  }

  private async applyConfiguration(bundle: CertBundle): Promise<void> {
    const cfg = this.o.webhook.configuration;
    const settings = this.settings;
    if (cfg === undefined || settings === undefined || bundle.caPem === this.caPem) return;
    await applyWebhookConfiguration(this.client, {
      ...cfg,
      caPem: bundle.caPem,
      operatorNamespace: settings.operatorNamespace,
      excludedNamespaces: settings.excludedNamespaces,
    });
    this.caPem = bundle.caPem;
  }

  /** Looks at the shared Secret again now and then: renews when due, follows another replica's renewal. */
  private scheduleRefresh(): void {
    const { o } = this;
    this.refreshTimer = setTimeout(() => {
      const settings = this.settings;
      if (settings === undefined) return;
      const ns = settings.operatorNamespace;
      ensureWebhookSecret(this.client, ns, o.webhook.secretName, o.webhook.hosts, o.logger)
        .then(async (bundle) => {
          if (bundle.certPem !== this.certPem) {
            this.webhook?.setCertificate(bundle);
            this.certPem = bundle.certPem;
          }
          await this.applyConfiguration(bundle);
        })
        .catch((err: unknown) =>
          o.logger.warn(
            { event: 'webhook_cert_refresh_failed', err: String(err) },
            'webhook certificate refresh failed',
          ),
        )
        .finally(() => {
          if (!this.stopped) this.scheduleRefresh();
        });
    }, o.webhook.refreshMs ?? 60_000);
    this.refreshTimer.unref();
  }
}
