/** What the reconcilers share: the caches, the API, events, metrics, a clock and the settings. */
import type { V1Pod } from '@kubernetes/client-node';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import type { Logger } from '../../sidecar/node/logger.js';
import type { InjectSettings } from '../inject/settings.js';
import type { KubeClient, PartialObjectMetadata } from '../kube/client.js';
import type { OperatorMetrics } from '../metrics.js';
import type { EventRecorder } from './events.js';
import type { SidecarStatusFetcher } from './sidecar-client.js';

/** Read-only views of the informer caches. */
export interface Cache<T> {
  list(namespace?: string): readonly T[];
  get(name: string, namespace?: string): T | undefined;
}

export interface Caches {
  tunnels: Cache<PeerTunnel>;
  networks: Cache<PeerNetwork>;
  pods: Cache<V1Pod>;
  /** Metadata only: whether a Secret exists. Its data is read on demand (`swarmKeyState`). */
  secrets: Cache<PartialObjectMetadata>;
}

export interface ReconcileContext {
  client: KubeClient;
  caches: Caches;
  events: EventRecorder;
  metrics: OperatorMetrics;
  logger: Logger;
  settings: InjectSettings;
  sidecarStatus: SidecarStatusFetcher;
  now: () => Date;
  /** How often a tunnel's sidecars are asked for /status again. */
  statusIntervalMs: number;
  /** How often a network is looked at again (relay Service addresses change without events). */
  networkResyncMs: number;
}

export interface ReconcileOutcome {
  requeueAfterMs?: number;
}

/**
 * A reconcile that failed in its work, its status write, or both: both are kept, so the queue
 * retries while the status the work allowed is still written (docs/architecture.md, Reconcilers).
 */
export class ReconcileError extends Error {
  readonly workError?: unknown;
  readonly statusError?: unknown;
  constructor(key: string, workError: unknown, statusError: unknown) {
    const parts = [workError, statusError].filter((e) => e !== undefined).map(String);
    super(`reconcile ${key}: ${parts.join('; status: ')}`);
    this.name = 'ReconcileError';
    this.workError = workError;
    this.statusError = statusError;
  }
}

export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

export const keyOf = (o: { metadata?: { namespace?: string; name?: string } }): string =>
  `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
