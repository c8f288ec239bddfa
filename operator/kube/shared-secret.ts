/**
 * A Secret every operator replica shares and any of them may create (the status token, the
 * webhook's certificate): read it, keep what is there when it still serves, otherwise write a new
 * value with the read resourceVersion, so two replicas starting together end up with one value:
 * the loser of a create or update conflict (409) reads again and uses the winner's.
 */
import type { V1Secret } from '@kubernetes/client-node';
import { isConflict } from '../errors.js';
import { type KubeClient, paths } from './client.js';

export interface SharedSecretSpec<T> {
  namespace: string;
  name: string;
  /** `app.kubernetes.io/component` of the Secret. */
  component: string;
  type: string;
  /** The value the Secret holds, when it still serves; undefined to write a new one. */
  current(existing: V1Secret): T | undefined;
  /** A new value and the Secret data that holds it. */
  make(existing: V1Secret | undefined): Promise<{ value: T; data: Record<string, string> }>;
  /** Called once this replica's value was written. */
  written(value: T): void;
  /** The error when the Secret keeps changing under every attempt. */
  gaveUp(message: string): Error;
}

const ATTEMPTS = 5;

export async function ensureSharedSecret<T>(client: KubeClient, s: SharedSecretSpec<T>): Promise<T> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const existing = await client.find<V1Secret>(paths.secret(s.namespace, s.name));
    const kept = existing === undefined ? undefined : s.current(existing);
    if (kept !== undefined) return kept;
    const { value, data } = await s.make(existing);
    const body: V1Secret = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        name: s.name,
        namespace: s.namespace,
        labels: { 'app.kubernetes.io/name': 'peertunnel', 'app.kubernetes.io/component': s.component },
        resourceVersion: existing?.metadata?.resourceVersion,
      },
      type: s.type,
      data,
    };
    try {
      if (existing === undefined) await client.create(paths.secrets(s.namespace), body);
      else await client.replace(paths.secret(s.namespace, s.name), body);
      s.written(value);
      return value;
    } catch (err) {
      // 409: another replica created or replaced it first; use theirs.
      if (!isConflict(err)) throw err;
    }
  }
  throw s.gaveUp(`Secret ${s.namespace}/${s.name} kept changing under us; giving up for now`);
}
