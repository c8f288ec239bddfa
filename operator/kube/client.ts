/**
 * The operator's one door to the API server: typed JSON requests over node:https, authenticated
 * and trusted through @kubernetes/client-node's KubeConfig (kubeconfig file or in-cluster).
 *
 * Why not the generated per-kind clients: the operator needs a handful of verbs on a handful of
 * paths, with exact content types (server-side apply on `/status`, JSON patch), and one error
 * class that carries the HTTP status and the API server's reason. The informers still come from
 * client-node (`controller/informer.ts`).
 */
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import { KubeApiError } from '../errors.js';

/** The field manager of everything the operator writes (server-side apply owns fields by it). */
export const FIELD_MANAGER = 'peertunnel-operator';

export const ContentType = {
  json: 'application/json',
  apply: 'application/apply-patch+yaml',
  jsonPatch: 'application/json-patch+json',
  mergePatch: 'application/merge-patch+json',
} as const;
export type ContentType = (typeof ContentType)[keyof typeof ContentType];

export interface KubeRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  body?: unknown;
  contentType?: ContentType;
  query?: Record<string, string | number | boolean | undefined>;
  /** Default 30 s; a hung API server must not hang a reconcile forever. */
  timeoutMs?: number;
  /** The Accept header. @default application/json */
  accept?: string;
}

/** Accept headers that make the API server send only objects' metadata (no Secret data). */
export const METADATA_ONLY = {
  list: 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1',
  watch: 'application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1',
} as const;

/** Any Kubernetes object (apiVersion, kind, metadata). */
export type KubeObject = KubernetesObject;
/** What a metadata-only list or watch returns (kind PartialObjectMetadata): metadata and nothing else. */
export type PartialObjectMetadata = KubernetesObject;

export interface KubeList<T> {
  metadata?: { resourceVersion?: string; continue?: string };
  items: T[];
}

interface StatusBody {
  kind?: string;
  reason?: string;
  message?: string;
}

/** Loads a kubeconfig: the file when given, else in-cluster when running in a pod, else the default. */
export function loadKubeConfig(kubeconfigPath: string | undefined, env: NodeJS.ProcessEnv): KubeConfig {
  const kc = new KubeConfig();
  const path = kubeconfigPath ?? env.KUBECONFIG;
  if (path !== undefined && path !== '') kc.loadFromFile(path);
  else if (env.KUBERNETES_SERVICE_HOST !== undefined) kc.loadFromCluster();
  else kc.loadFromDefault();
  return kc;
}

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  private readonly server: URL;

  constructor(kubeConfig: KubeConfig) {
    this.kubeConfig = kubeConfig;
    const cluster = kubeConfig.getCurrentCluster();
    if (cluster === null) throw new KubeApiError('GET', '(kubeconfig)', 0, 'NoCluster', 'no current cluster');
    this.server = new URL(cluster.server);
  }

  /** One request; resolves with the parsed JSON body, rejects with KubeApiError on a non-2xx answer. */
  async request<T>(path: string, req: KubeRequest = {}): Promise<T> {
    const method = req.method ?? 'GET';
    const url = new URL(path, this.server);
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    const opts: RequestOptions = { method, headers: { accept: req.accept ?? 'application/json' } };
    await this.kubeConfig.applyToHTTPSOptions(opts);
    const body = req.body === undefined ? undefined : JSON.stringify(req.body);
    const headers = (opts.headers ?? {}) as Record<string, string>;
    if (body !== undefined) headers['content-type'] = req.contentType ?? ContentType.json;
    opts.headers = headers;
    opts.signal = AbortSignal.timeout(req.timeoutMs ?? 30_000);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const r = httpsRequest(url, opts, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          data += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
        res.on('error', reject);
      });
      r.on('error', (err) =>
        reject(new KubeApiError(method, url.pathname, 0, 'ConnectionFailed', err.message)),
      );
      r.end(body);
    });
    if (status < 200 || status >= 300) {
      let parsed: StatusBody = {};
      try {
        parsed = JSON.parse(text) as StatusBody;
      } catch {
        // Not a Status object (a proxy's HTML, say): keep the raw text as the message.
      }
      throw new KubeApiError(
        method,
        url.pathname,
        status,
        parsed.reason ?? 'Unknown',
        parsed.message ?? text.slice(0, 300),
      );
    }
    return (text === '' ? {} : JSON.parse(text)) as T;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>(path);
  }

  /** GET that resolves `undefined` on 404. */
  async find<T>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>(path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  list<T>(path: string, query?: KubeRequest['query'], accept?: string): Promise<KubeList<T>> {
    return this.request<KubeList<T>>(path, { query, accept });
  }

  create<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(path, { method: 'POST', body, query: { fieldManager: FIELD_MANAGER } });
  }

  /** Server-side apply (force: the operator owns what it applies). */
  apply<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(path, {
      method: 'PATCH',
      body,
      contentType: ContentType.apply,
      query: { fieldManager: FIELD_MANAGER, force: true },
    });
  }

  replace<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>(path, { method: 'PUT', body, query: { fieldManager: FIELD_MANAGER } });
  }

  async delete(path: string): Promise<void> {
    try {
      await this.request<unknown>(path, { method: 'DELETE' });
    } catch (err) {
      if (!(err instanceof KubeApiError && err.status === 404)) throw err;
    }
  }

  /** The server's version (`/version`): major and minor as numbers. */
  async serverVersion(): Promise<{ major: number; minor: number; gitVersion: string }> {
    const v = await this.get<{ major?: string; minor?: string; gitVersion?: string }>('/version');
    return {
      major: Number.parseInt(v.major ?? '0', 10),
      // Some distributions report minor as "29+".
      minor: Number.parseInt(v.minor ?? '0', 10),
      gitVersion: v.gitVersion ?? 'unknown',
    };
  }
}

/** Paths of the objects the operator touches. */
export const paths = {
  tunnels: (ns?: string) =>
    ns === undefined
      ? '/apis/peertunnel.io/v1alpha1/peertunnels'
      : `/apis/peertunnel.io/v1alpha1/namespaces/${ns}/peertunnels`,
  tunnel: (ns: string, name: string) => `/apis/peertunnel.io/v1alpha1/namespaces/${ns}/peertunnels/${name}`,
  networks: (ns?: string) =>
    ns === undefined
      ? '/apis/peertunnel.io/v1alpha1/peernetworks'
      : `/apis/peertunnel.io/v1alpha1/namespaces/${ns}/peernetworks`,
  network: (ns: string, name: string) => `/apis/peertunnel.io/v1alpha1/namespaces/${ns}/peernetworks/${name}`,
  pods: (ns?: string) => (ns === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${ns}/pods`),
  secrets: (ns?: string) => (ns === undefined ? '/api/v1/secrets' : `/api/v1/namespaces/${ns}/secrets`),
  secret: (ns: string, name: string) => `/api/v1/namespaces/${ns}/secrets/${name}`,
  services: (ns: string) => `/api/v1/namespaces/${ns}/services`,
  service: (ns: string, name: string) => `/api/v1/namespaces/${ns}/services/${name}`,
  deployment: (ns: string, name: string) => `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
  events: (ns: string) => `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  event: (ns: string, name: string) => `/apis/events.k8s.io/v1/namespaces/${ns}/events/${name}`,
  leases: (ns: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`,
  lease: (ns: string, name: string) => `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/${name}`,
  mutatingWebhook: (name: string) =>
    `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`,
} as const;
