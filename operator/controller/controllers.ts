/**
 * The controllers of one leadership term: two work queues (PeerTunnel, PeerNetwork) fed by the
 * shared informers, each drained by workers that run its reconciler. Created when this replica
 * starts leading, stopped when it stops; the informers outlive it (the webhook reads them too).
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import { matchesSelector } from '../inject/selector.js';
import type { PartialObjectMetadata } from '../kube/client.js';
import type { ReconcileKind } from '../metrics.js';
import { keyOf, type ReconcileContext, type ReconcileOutcome } from './context.js';
import type { InformerEventType, ResilientInformer } from './informer.js';
import { reconcileNetwork } from './network-reconciler.js';
import { WorkQueue } from './queue.js';
import { tunnelsOfPod } from './status.js';
import { reconcileTunnel } from './tunnel-reconciler.js';

export interface Informers {
  tunnels: ResilientInformer<PeerTunnel>;
  networks: ResilientInformer<PeerNetwork>;
  pods: ResilientInformer<V1Pod>;
  secrets: ResilientInformer<PartialObjectMetadata>;
}

export interface ControllersInit {
  /** Concurrent reconciles per kind. @default 4 */
  workers?: number;
}

export class Controllers {
  readonly tunnelQueue: WorkQueue;
  readonly networkQueue: WorkQueue;
  private running?: Promise<void>;
  private readonly unsubscribe: Array<() => void> = [];
  private stopped = false;

  constructor(
    private readonly ctx: ReconcileContext,
    private readonly informers: Informers,
    private readonly init: ControllersInit = {},
  ) {
    const depth = (kind: ReconcileKind) => (d: number) => ctx.metrics.queueDepth.set({ kind }, d);
    this.tunnelQueue = new WorkQueue({ onDepth: depth('PeerTunnel') });
    this.networkQueue = new WorkQueue({ onDepth: depth('PeerNetwork') });
  }

  start(): void {
    const { informers } = this;
    this.subscribe(informers.tunnels, (_t, tunnel) => {
      this.tunnelQueue.add(keyOf(tunnel));
      this.networkQueue.add(`${tunnel.metadata.namespace ?? ''}/${tunnel.spec.networkRef.name}`);
    });
    this.subscribe(informers.networks, (_t, network) => {
      this.networkQueue.add(keyOf(network));
      this.tunnelsOfNetwork(network.metadata.namespace ?? '', network.metadata.name ?? '');
    });
    this.subscribe(informers.secrets, (_t, secret) => {
      const ns = secret.metadata?.namespace ?? '';
      for (const n of this.ctx.caches.networks.list(ns)) {
        if (n.spec.swarmKeySecretRef.name === secret.metadata?.name) {
          this.networkQueue.add(keyOf(n));
          this.tunnelsOfNetwork(ns, n.metadata.name ?? '');
        }
      }
    });
    this.subscribe(informers.pods, (_t, pod) => {
      const ns = pod.metadata?.namespace ?? '';
      const named = new Set(tunnelsOfPod(pod, this.ctx.settings.containerName));
      for (const t of this.ctx.caches.tunnels.list(ns)) {
        if (named.has(t.metadata.name ?? '') || matchesSelector(t.spec.selector, pod.metadata?.labels)) {
          this.tunnelQueue.add(keyOf(t));
        }
      }
      // Tunnels named by the pod but gone: their reconcile tells the pod (TunnelDeleted).
      for (const n of named)
        if (this.ctx.caches.tunnels.get(n, ns) === undefined) this.tunnelQueue.add(`${ns}/${n}`);
    });
    // Level-based: everything once at the start, whatever events come.
    for (const n of this.ctx.caches.networks.list()) this.networkQueue.add(keyOf(n));
    for (const t of this.ctx.caches.tunnels.list()) this.tunnelQueue.add(keyOf(t));
    const workers = this.init.workers ?? 4;
    this.running = Promise.all([
      this.tunnelQueue.run((k) => this.reconcile('PeerTunnel', k, reconcileTunnel), workers),
      this.networkQueue.run((k) => this.reconcile('PeerNetwork', k, reconcileNetwork), workers),
    ]).then(() => {});
  }

  /** Stops taking work and waits for reconciles in flight. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const u of this.unsubscribe.splice(0)) u();
    this.tunnelQueue.shutDown();
    this.networkQueue.shutDown();
    await this.running;
  }

  private tunnelsOfNetwork(namespace: string, network: string): void {
    for (const t of this.ctx.caches.tunnels.list(namespace)) {
      if (t.spec.networkRef.name === network) this.tunnelQueue.add(keyOf(t));
    }
  }

  private subscribe<T>(
    informer: { on(h: (type: InformerEventType, obj: T) => void): () => void },
    handler: (type: InformerEventType, obj: T) => void,
  ): void {
    this.unsubscribe.push(informer.on(handler));
  }

  private async reconcile(
    kind: ReconcileKind,
    key: string,
    fn: (ctx: ReconcileContext, key: string) => Promise<ReconcileOutcome>,
  ): Promise<ReconcileOutcome> {
    const end = this.ctx.metrics.reconcileSeconds.startTimer({ kind });
    try {
      const out = await fn(this.ctx, key);
      this.ctx.metrics.reconciles.inc({ kind, result: 'success' });
      return out;
    } catch (err) {
      this.ctx.metrics.reconciles.inc({ kind, result: 'error' });
      this.ctx.logger.warn(
        { event: 'reconcile_failed', kind, key, err: String(err) },
        'reconcile failed; will retry',
      );
      throw err;
    } finally {
      end();
    }
  }
}
