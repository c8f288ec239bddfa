/** Container and pod status objects as a kubelet writes them. Pure. */
import type { V1ContainerState, V1ContainerStatus, V1PodCondition } from '@kubernetes/client-node';

/** RFC 3339 without fractions, as the API server stores times. */
export function kubeTime(d: Date = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** What one container is doing, in the API's shape (times already strings). */
export type ContainerStateJson =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | {
      terminated: {
        exitCode: number;
        signal?: number;
        reason: string;
        message?: string;
        startedAt: string;
        finishedAt: string;
        containerID?: string;
      };
    };

export interface ContainerView {
  readonly name: string;
  readonly image: string;
  readonly state: ContainerStateJson;
  readonly lastState: ContainerStateJson | undefined;
  readonly restartCount: number;
  readonly ready: boolean;
  readonly started: boolean;
  readonly containerID: string | undefined;
}

export function containerStatus(c: ContainerView): V1ContainerStatus {
  return {
    name: c.name,
    image: c.image,
    imageID: `lab://${c.image}`,
    ...(c.containerID === undefined ? {} : { containerID: c.containerID }),
    ready: c.ready,
    started: c.started,
    restartCount: c.restartCount,
    state: c.state as V1ContainerState,
    lastState: (c.lastState ?? {}) as V1ContainerState,
  };
}

/** Keeps each condition's lastTransitionTime until its status changes. */
export class Conditions {
  private readonly since = new Map<string, { status: string; at: string }>();

  make(type: string, ok: boolean, reason?: string, message?: string): V1PodCondition {
    const status = ok ? 'True' : 'False';
    let entry = this.since.get(type);
    if (entry?.status !== status) {
      entry = { status, at: kubeTime() };
      this.since.set(type, entry);
    }
    return {
      type,
      status,
      lastTransitionTime: entry.at as unknown as Date,
      lastProbeTime: null as unknown as Date,
      ...(reason === undefined ? {} : { reason }),
      ...(message === undefined ? {} : { message }),
    };
  }
}

/** Exit signal → the terminated reason and exit code a runtime reports (128 + signal). */
export function terminatedOf(
  code: number | null,
  signal: NodeJS.Signals | null,
  signals: Readonly<Record<string, number>>,
): { exitCode: number; reason: string; signal?: number } {
  if (code !== null) return { exitCode: code, reason: code === 0 ? 'Completed' : 'Error' };
  const n = signal === null ? 0 : (signals[signal] ?? 0);
  return { exitCode: 128 + n, reason: 'Error', signal: n };
}
