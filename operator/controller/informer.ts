/**
 * An informer that keeps going. client-node's ListWatch stops for good on any error other than
 * 410 Gone (an API server restart, a network blip, a 403 while RBAC is being applied) and its own
 * `stop()` reports an abort error. This wrapper restarts it with exponential backoff
 * and jitter, ignores errors while stopping, and tells when the cache is synced.
 */
import { type KubeConfig, makeInformer } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { type KubeClient, type KubeObject, METADATA_ONLY } from '../kube/client.js';
import type { OperatorMetrics } from '../metrics.js';

export type InformerEventType = 'add' | 'update' | 'delete';
export type InformerHandler<T> = (type: InformerEventType, obj: T) => void;

export interface InformerInit {
  /** First restart delay. @default 500 ms */
  minBackoffMs?: number;
  /** Longest restart delay. @default 30 s */
  maxBackoffMs?: number;
  /**
   * List and watch objects' metadata only (PartialObjectMetadata): for Secrets, whose data the
   * cache must not hold (every Helm release's is a Secret); the data is read on demand.
   */
  metadataOnly?: boolean;
}

/**
 * The kubeconfig, but every request client-node makes with it (the informer's watch) asks for
 * `accept`. client-node's Watch takes its headers from applySecurityAuthentication alone.
 */
function withAccept(kc: KubeConfig, accept: string): KubeConfig {
  const wrapped = Object.create(kc) as KubeConfig;
  wrapped.applySecurityAuthentication = async (ctx) => {
    await kc.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', accept);
  };
  return wrapped;
}

export interface InformerComponents {
  kubeConfig: KubeConfig;
  client: KubeClient;
  metrics: OperatorMetrics;
  logger: Logger;
}

export class ResilientInformer<T extends KubeObject> {
  readonly resource: string;
  private readonly informer: ReturnType<typeof makeInformer<T>>;
  private readonly handlers: InformerHandler<T>[] = [];
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private backoffMs: number;
  private stopping = false;
  private failedSinceStart = false;
  private restartTimer?: NodeJS.Timeout;
  private isSynced = false;
  private readonly syncWaiters: Array<() => void> = [];

  constructor(
    private readonly c: InformerComponents,
    resource: string,
    path: string,
    init: InformerInit = {},
  ) {
    this.resource = resource;
    this.minBackoffMs = init.minBackoffMs ?? 500;
    this.maxBackoffMs = init.maxBackoffMs ?? 30_000;
    this.backoffMs = this.minBackoffMs;
    this.informer = init.metadataOnly
      ? makeInformer<T>(withAccept(c.kubeConfig, METADATA_ONLY.watch), path, () =>
          c.client.list<T>(path, undefined, METADATA_ONLY.list),
        )
      : makeInformer<T>(c.kubeConfig, path, () => c.client.list<T>(path));
    for (const type of ['add', 'update', 'delete'] as const) {
      this.informer.on(type, (obj: T) => {
        for (const h of this.handlers) h(type, obj);
      });
    }
    this.informer.on('error', (err: unknown) => this.onError(err));
  }

  /** Adds a handler; returns its removal. */
  on(handler: InformerHandler<T>): () => void {
    this.handlers.push(handler);
    return () => {
      const i = this.handlers.indexOf(handler);
      if (i >= 0) this.handlers.splice(i, 1);
    };
  }

  get synced(): boolean {
    return this.isSynced;
  }

  /** Starts listing and watching; resolves once the first list has filled the cache. */
  async start(): Promise<void> {
    this.stopping = false;
    await this.run();
    if (!this.isSynced) await new Promise<void>((resolve) => this.syncWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    // Before stop(): the abort it causes arrives as an error, which must not schedule a restart.
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await this.informer.stop();
  }

  list(namespace?: string): readonly T[] {
    return this.informer.list(namespace);
  }

  get(name: string, namespace?: string): T | undefined {
    return this.informer.get(name, namespace);
  }

  private async run(): Promise<void> {
    this.failedSinceStart = false;
    try {
      await this.informer.start();
    } catch (err) {
      this.onError(err);
      return;
    }
    // ListWatch.start() resolves even when its list failed (it reports that as an error event).
    if (this.failedSinceStart || this.stopping) return;
    this.backoffMs = this.minBackoffMs;
    if (!this.isSynced) {
      this.isSynced = true;
      this.c.logger.debug({ event: 'informer_synced', resource: this.resource }, 'informer synced');
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private onError(err: unknown): void {
    this.failedSinceStart = true;
    if (this.stopping) return;
    clearTimeout(this.restartTimer);
    const delay = Math.round(this.backoffMs * (0.8 + Math.random() * 0.4));
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.c.metrics.informerRestarts.inc({ resource: this.resource });
    this.c.logger.warn(
      { event: 'informer_restart', resource: this.resource, delayMs: delay, err: String(err) },
      'informer stopped; restarting',
    );
    this.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      // No stop() first: after an error the ListWatch has already dropped its request, and a stop
      // would only report one more (abort) error.
      this.run().catch((e: unknown) => this.onError(e));
    }, delay);
  }
}
