/**
 * The few API calls a kubelet makes, as JSON through the control plane's admin requests
 * (`ControlPlane.request`).
 */
import type { V1ConfigMap, V1Pod, V1Secret } from '@kubernetes/client-node';
import type { ControlPlane } from '../control-plane.js';
import type { ObjectSource } from './env.js';

/** An API call answered with an unexpected status. */
export class KubeApiError extends Error {
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    body: string,
  ) {
    super(`${method} ${path}: ${status} ${body.slice(0, 400)}`);
    this.name = 'KubeApiError';
  }
}

const enc = encodeURIComponent;

export class KubeApi implements ObjectSource {
  constructor(private readonly cp: ControlPlane) {}

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { ok?: readonly number[]; contentType?: string } = {},
  ): Promise<{ status: number; value: T | undefined }> {
    const r = await this.cp.request(path, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), contentType: opts.contentType ?? 'application/json' }),
    });
    const ok = opts.ok ?? [200, 201];
    if (!ok.includes(r.status)) throw new KubeApiError(method, path, r.status, r.body);
    return { status: r.status, value: r.status < 300 ? (JSON.parse(r.body) as T) : undefined };
  }

  async get<T>(path: string): Promise<T | undefined> {
    return (await this.call<T>('GET', path, undefined, { ok: [200, 404] })).value;
  }

  async mergePatch(path: string, patch: unknown, ok: readonly number[] = [200]): Promise<number> {
    return (await this.call('PATCH', path, patch, { ok, contentType: 'application/merge-patch+json' }))
      .status;
  }

  listPods(): Promise<{ items: V1Pod[] } | undefined> {
    return this.get<{ items: V1Pod[] }>('/api/v1/pods');
  }

  secret(namespace: string, name: string): Promise<V1Secret | undefined> {
    return this.get<V1Secret>(`/api/v1/namespaces/${enc(namespace)}/secrets/${enc(name)}`);
  }

  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    return this.get<V1ConfigMap>(`/api/v1/namespaces/${enc(namespace)}/configmaps/${enc(name)}`);
  }

  podPath(namespace: string, name: string): string {
    return `/api/v1/namespaces/${enc(namespace)}/pods/${enc(name)}`;
  }

  /** What the scheduler does: binds the pod to a node (409 when someone else already did). */
  async bind(namespace: string, name: string, node: string): Promise<boolean> {
    const r = await this.call(
      'POST',
      `${this.podPath(namespace, name)}/binding`,
      {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name },
        target: { apiVersion: 'v1', kind: 'Node', name: node },
      },
      { ok: [200, 201, 409] },
    );
    return r.status !== 409;
  }

  /** Pod status as a kubelet writes it (merge patch of the status subresource); false if the pod is gone. */
  async patchPodStatus(namespace: string, name: string, uid: string, status: unknown): Promise<boolean> {
    const code = await this.mergePatch(
      `${this.podPath(namespace, name)}/status`,
      { metadata: { uid }, status },
      [200, 404, 409],
    );
    return code === 200;
  }

  /** The kubelet's final delete: gracePeriodSeconds 0, only this incarnation (uid precondition). */
  async deletePodNow(namespace: string, name: string, uid: string): Promise<void> {
    await this.call(
      'DELETE',
      this.podPath(namespace, name),
      { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: { uid } },
      { ok: [200, 202, 404, 409] },
    );
  }
}
