/**
 * The few API calls a kubelet makes, as JSON over HTTPS with the control plane's admin token. Its
 * own requests rather than `ControlPlane.request`: that one sends a DELETE body without a
 * Content-Length, so the API server takes the body for the next request on the kept-alive
 * connection, which then fails with a bare 400.
 */
import { Agent, request as httpsRequest } from 'node:https';
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
  private readonly agent: Agent;
  constructor(private readonly cp: ControlPlane) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 8, ca: cp.caPem });
  }

  private request(
    method: string,
    path: string,
    body: string | undefined,
    contentType: string,
  ): Promise<{ status: number; body: string }> {
    const payload = body === undefined ? undefined : Buffer.from(body);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${this.cp.url}${path}`,
        {
          method,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${this.cp.adminToken}`,
            accept: 'application/json',
            ...(payload === undefined
              ? {}
              : { 'content-type': contentType, 'content-length': String(payload.length) }),
          },
          signal: AbortSignal.timeout(15_000),
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.agent.destroy();
  }

  async call<T>(
    method: string,
    path: string,
    body?: unknown,
    opts: { ok?: readonly number[]; contentType?: string } = {},
  ): Promise<{ status: number; value: T | undefined }> {
    const r = await this.request(
      method,
      path,
      body === undefined ? undefined : JSON.stringify(body),
      opts.contentType ?? 'application/json',
    );
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
