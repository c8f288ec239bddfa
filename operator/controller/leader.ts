/**
 * Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it:
 * create or take over the Lease when its holder has not renewed it for a lease duration (measured
 * on this replica's own clock from when it last saw the record change, so clocks need not agree),
 * renew every retry period, give up leadership when renewing fails for longer than the renew
 * deadline, and release the Lease on a graceful stop so a successor need not wait it out.
 * Lease times are MicroTime (V1MicroTime): the API server refuses a Lease with second-precision times.
 */
import { V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { isConflict, isNotFound } from '../errors.js';
import { type KubeClient, paths } from '../kube/client.js';

export interface LeaderElectorInit {
  namespace: string;
  /** @default peertunnel-operator */
  leaseName?: string;
  /** This replica's identity (the pod name). */
  identity: string;
  /** @default 15 s */
  leaseDurationMs?: number;
  /** @default 10 s */
  renewDeadlineMs?: number;
  /** @default 2 s */
  retryPeriodMs?: number;
  /** @default () => new Date() */
  now?: () => Date;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  /** Awaited before the Lease is released, so no two leaders' controllers overlap. */
  onStoppedLeading(): Promise<void>;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | V1MicroTime | null;
    renewTime?: string | V1MicroTime | null;
    leaseTransitions?: number;
  };
}

export class LeaderElector {
  readonly leaseName: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly now: () => Date;
  private leading = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private lastRenewOk = 0;
  /** The record last seen, and when (our clock) it last changed. */
  private observed?: { key: string; at: number };
  private loop?: Promise<void>;

  constructor(
    private readonly init: LeaderElectorInit,
    private readonly client: KubeClient,
    private readonly callbacks: LeaderCallbacks,
    private readonly logger: Logger,
  ) {
    this.leaseName = init.leaseName ?? 'peertunnel-operator';
    this.leaseDurationMs = init.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = init.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = init.retryPeriodMs ?? 2_000;
    this.now = init.now ?? (() => new Date());
    if (!(this.leaseDurationMs > this.renewDeadlineMs && this.renewDeadlineMs > this.retryPeriodMs)) {
      throw new RangeError('leader election needs leaseDuration > renewDeadline > retryPeriod');
    }
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    this.stopped = false;
    this.schedule(0);
  }

  /** Stops campaigning; a leader releases the Lease first. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.loop;
    if (this.leading) await this.setLeading(false);
    // Also when a last try acquired the Lease just as we stopped: release() checks the holder.
    await this.release().catch((err: unknown) =>
      this.logger.warn({ event: 'lease_release_failed', err: String(err) }, 'could not release the Lease'),
    );
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.loop = this.tick().finally(() => {
        this.loop = undefined;
        this.schedule(this.retryPeriodMs);
      });
    }, ms);
  }

  private async tick(): Promise<void> {
    let ok = false;
    try {
      ok = await this.tryAcquireOrRenew();
    } catch (err) {
      this.logger.warn({ event: 'lease_error', err: String(err) }, 'leader election: API error');
    }
    if (this.stopped) return;
    const t = this.now().getTime();
    if (ok) {
      this.lastRenewOk = t;
      if (!this.leading) await this.setLeading(true);
    } else if (this.leading && t - this.lastRenewOk > this.renewDeadlineMs) {
      await this.setLeading(false);
    }
  }

  private async setLeading(leading: boolean): Promise<void> {
    this.leading = leading;
    this.logger.info(
      {
        event: leading ? 'leader_elected' : 'leader_lost',
        lease: this.leaseName,
        identity: this.init.identity,
      },
      leading ? 'leading: controllers start' : 'no longer leading: controllers stop',
    );
    if (leading) this.callbacks.onStartedLeading();
    else await this.callbacks.onStoppedLeading();
  }

  private spec(previous: Lease['spec'] | undefined): Lease['spec'] {
    const now = new V1MicroTime(this.now().getTime());
    const mine = previous?.holderIdentity === this.init.identity;
    return {
      holderIdentity: this.init.identity,
      leaseDurationSeconds: Math.ceil(this.leaseDurationMs / 1000),
      acquireTime: mine ? (previous?.acquireTime ?? now) : now,
      renewTime: now,
      leaseTransitions: (previous?.leaseTransitions ?? 0) + (mine || previous === undefined ? 0 : 1),
    };
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace } = this.init;
    const path = paths.lease(namespace, this.leaseName);
    const lease = await this.client.find<Lease>(path);
    if (lease === undefined) {
      try {
        await this.client.create(paths.leases(namespace), {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.leaseName, namespace },
          spec: this.spec(undefined),
        } satisfies Lease);
        return true;
      } catch (err) {
        if (isConflict(err)) return false;
        throw err;
      }
    }
    const t = this.now().getTime();
    const holder = lease.spec.holderIdentity ?? '';
    const key = `${holder}|${String(lease.spec.renewTime ?? '')}`;
    if (this.observed?.key !== key) this.observed = { key, at: t };
    const durationMs = (lease.spec.leaseDurationSeconds ?? 0) * 1000;
    if (holder !== '' && holder !== this.init.identity && t < this.observed.at + durationMs) return false;
    try {
      await this.client.replace(path, { ...lease, spec: this.spec(lease.spec) });
      return true;
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return false;
      throw err;
    }
  }

  /** Gives the Lease up: no holder, expiring at once, so the next candidate takes it on its next try. */
  private async release(): Promise<void> {
    const path = paths.lease(this.init.namespace, this.leaseName);
    const lease = await this.client.find<Lease>(path);
    if (lease === undefined || lease.spec.holderIdentity !== this.init.identity) return;
    const now = new V1MicroTime(this.now().getTime());
    await this.client.replace(path, {
      ...lease,
      spec: { ...lease.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: now },
    });
  }
}
