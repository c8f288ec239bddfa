/**
 * A container's environment as a kubelet builds it: `env` (value, secretKeyRef, configMapKeyRef,
 * fieldRef) and `envFrom` (secretRef, configMapRef), later entries overriding earlier ones, `$(VAR)`
 * references expanded from the variables defined before. Used by the loopback pod runner; the
 * objects come from a `ObjectSource` so this stays free of HTTP.
 */
import type { V1ConfigMap, V1Container, V1Pod, V1Secret } from '@kubernetes/client-node';

/** Reads Secrets and ConfigMaps of the pod's namespace; undefined when there is no such object. */
export interface ObjectSource {
  secret(namespace: string, name: string): Promise<V1Secret | undefined>;
  configMap(namespace: string, name: string): Promise<V1ConfigMap | undefined>;
  /** A token of the pod's ServiceAccount bound to the pod (TokenRequest), for projected token volumes. */
  serviceAccountToken?(
    pod: { namespace: string; name: string; uid: string; serviceAccount: string },
    o: { audience: string; expirationSeconds: number },
  ): Promise<string>;
}

/** What a kubelet reports as CreateContainerConfigError: the container cannot be configured (yet). */
export class ContainerConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContainerConfigError';
  }
}

/** Pod facts a fieldRef can read that the pod object does not carry yet (the kubelet knows them). */
export interface PodFacts {
  readonly podIP?: string;
  readonly hostIP?: string;
  readonly nodeName?: string;
}

function fieldValue(pod: V1Pod, facts: PodFacts, path: string): string | undefined {
  const meta = pod.metadata ?? {};
  const annotation = /^metadata\.annotations\['(.+)'\]$/.exec(path);
  if (annotation?.[1] !== undefined) return meta.annotations?.[annotation[1]] ?? '';
  const label = /^metadata\.labels\['(.+)'\]$/.exec(path);
  if (label?.[1] !== undefined) return meta.labels?.[label[1]] ?? '';
  switch (path) {
    case 'metadata.name':
      return meta.name ?? '';
    case 'metadata.namespace':
      return meta.namespace ?? '';
    case 'metadata.uid':
      return meta.uid ?? '';
    case 'spec.nodeName':
      return facts.nodeName ?? pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? '';
    case 'status.podIP':
    case 'status.podIPs':
      return facts.podIP ?? pod.status?.podIP ?? '';
    case 'status.hostIP':
    case 'status.hostIPs':
      return facts.hostIP ?? pod.status?.hostIP ?? '';
    default:
      return undefined;
  }
}

function decoded(secret: V1Secret, key: string): string | undefined {
  const data = secret.data?.[key];
  if (data !== undefined) return Buffer.from(data, 'base64').toString('utf8');
  return secret.stringData?.[key];
}

/** The container's env, in order; throws ContainerConfigError for a missing non-optional reference. */
export async function resolveContainerEnv(
  source: ObjectSource,
  pod: V1Pod,
  container: V1Container,
  facts: PodFacts = {},
): Promise<Record<string, string>> {
  const ns = pod.metadata?.namespace ?? '';
  const out: Record<string, string> = {};
  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.secretRef !== undefined) {
      const secret = await source.secret(ns, from.secretRef.name ?? '');
      if (secret === undefined) {
        if (from.secretRef.optional === true) continue;
        throw new ContainerConfigError(`secret "${from.secretRef.name}" not found`);
      }
      for (const key of Object.keys({ ...secret.stringData, ...secret.data })) {
        out[prefix + key] = decoded(secret, key) ?? '';
      }
    } else if (from.configMapRef !== undefined) {
      const cm = await source.configMap(ns, from.configMapRef.name ?? '');
      if (cm === undefined) {
        if (from.configMapRef.optional === true) continue;
        throw new ContainerConfigError(`configmap "${from.configMapRef.name}" not found`);
      }
      Object.assign(out, Object.fromEntries(Object.entries(cm.data ?? {}).map(([k, v]) => [prefix + k, v])));
    }
  }
  for (const e of container.env ?? []) {
    const from = e.valueFrom;
    if (from === undefined) {
      out[e.name] = expandVars(e.value ?? '', out);
    } else if (from.secretKeyRef !== undefined) {
      const ref = from.secretKeyRef;
      const secret = await source.secret(ns, ref.name ?? '');
      const value = secret === undefined ? undefined : decoded(secret, ref.key);
      if (value === undefined) {
        if (ref.optional === true) continue;
        throw new ContainerConfigError(
          secret === undefined
            ? `secret "${ref.name}" not found (env ${e.name})`
            : `couldn't find key ${ref.key} in Secret ${ns}/${ref.name} (env ${e.name})`,
        );
      }
      out[e.name] = value;
    } else if (from.configMapKeyRef !== undefined) {
      const ref = from.configMapKeyRef;
      const cm = await source.configMap(ns, ref.name ?? '');
      const value = cm?.data?.[ref.key];
      if (value === undefined) {
        if (ref.optional === true) continue;
        throw new ContainerConfigError(
          cm === undefined
            ? `configmap "${ref.name}" not found (env ${e.name})`
            : `couldn't find key ${ref.key} in ConfigMap ${ns}/${ref.name} (env ${e.name})`,
        );
      }
      out[e.name] = value;
    } else if (from.fieldRef !== undefined) {
      const value = fieldValue(pod, facts, from.fieldRef.fieldPath);
      if (value === undefined) {
        throw new ContainerConfigError(`env ${e.name}: unsupported fieldRef ${from.fieldRef.fieldPath}`);
      }
      out[e.name] = value;
    } else {
      throw new ContainerConfigError(`env ${e.name}: only value, secretKeyRef, configMapKeyRef and fieldRef`);
    }
  }
  return out;
}

/**
 * `$(VAR)` references in command and args, expanded from the container's env as a kubelet does;
 * `$$(VAR)` escapes; unknown references stay as written.
 */
export function expandVars(value: string, env: Readonly<Record<string, string>>): string {
  return value.replace(
    /\$(\$)?\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g,
    (whole, escaped: string | undefined, name: string) => {
      if (escaped !== undefined) return `$(${name})`;
      return env[name] ?? whole;
    },
  );
}
