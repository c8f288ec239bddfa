/**
 * Events (events.k8s.io/v1) on the objects the operator manages: `kubectl describe` and
 * `kubectl get events` show them. Best effort: a failure to record an event is logged, never
 * fails a reconcile. Reconcilers record on transitions (a condition that changed), so a restarted
 * operator that finds everything right records nothing; events that describe a standing state
 * (a pod running the sidecar of a deleted tunnel) take a deterministic name, recorded once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../../sidecar/node/logger.js';
import { isConflict } from '../errors.js';
import { type KubeClient, type KubeObject, paths } from '../kube/client.js';

export type EventType = 'Normal' | 'Warning';

export const REPORTING_CONTROLLER = 'peertunnel.io/operator';
const NOTE_MAX = 1024;

export interface EventInit {
  type: EventType;
  reason: string;
  note: string;
  /** What the operator did: Reconcile, Inject, ... @default Reconcile */
  action?: string;
  /** Record at most once per (object, reason, note): the name derives from them. */
  once?: boolean;
}

export interface EventRecorder {
  record(obj: KubeObject, init: EventInit): Promise<void>;
}

export class ApiEventRecorder implements EventRecorder {
  constructor(
    private readonly client: KubeClient,
    private readonly instance: string,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async record(obj: KubeObject, init: EventInit): Promise<void> {
    const name = obj.metadata?.name ?? '';
    const namespace = obj.metadata?.namespace ?? 'default';
    const note = init.note.length > NOTE_MAX ? `${init.note.slice(0, NOTE_MAX - 3)}...` : init.note;
    const suffix = init.once
      ? createHash('sha256')
          .update(`${obj.metadata?.uid ?? ''}|${init.reason}|${note}`)
          .digest('hex')
          .slice(0, 16)
      : `${this.now().getTime().toString(16)}${randomBytes(4).toString('hex')}`;
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${name.slice(0, 200)}.${suffix}`, namespace },
      eventTime: new V1MicroTime(this.now().getTime()),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.instance.slice(0, 128),
      action: init.action ?? 'Reconcile',
      reason: init.reason,
      note,
      type: init.type,
      regarding: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        name,
        namespace,
        uid: obj.metadata?.uid,
      },
    };
    try {
      await this.client.create(paths.events(namespace), event);
      this.logger.info(
        { event: 'k8s_event', kind: obj.kind, name, namespace, reason: init.reason, type: init.type },
        note,
      );
    } catch (err) {
      if (init.once && isConflict(err)) return;
      this.logger.warn(
        { event: 'k8s_event_failed', reason: init.reason, err: String(err) },
        'event not recorded',
      );
    }
  }
}
