/**
 * The README walk-through (section "Walk-through: redis in cluster B, its client in cluster A"),
 * step by step on two clusters, reading the same files the README shows. What the lab needs on top
 * is applied separately and named `labOnly...`, never by editing those files.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/node-process.js';
import { eventually } from '../integration/operator-harness.js';
import { APP_NS, type Cluster } from './cluster.js';

export const EXAMPLES = join(REPO_ROOT, 'examples', 'two-clusters');
export const FILES = {
  networkB: join(EXAMPLES, 'cluster-b', 'network.yaml'),
  redisB: join(EXAMPLES, 'cluster-b', 'redis.yaml'),
  networkA: join(EXAMPLES, 'cluster-a', 'network.yaml'),
  clientA: join(EXAMPLES, 'cluster-a', 'client.yaml'),
} as const;
/** The placeholder of cluster-a/network.yaml that the README's sed line replaces. */
export const RELAY_PLACEHOLDER = 'RELAY_ADDRESS';

/**
 * Lab-only: the lab's "internet" is made of documentation ranges, which a node does not count as
 * public unless told (`spec.publicRanges`). Applied right after the network, before any pod.
 */
export async function labOnlyPublicRanges(c: Cluster, ranges: readonly string[]): Promise<void> {
  await c.kubectl([
    '-n',
    APP_NS,
    'patch',
    'peernetwork',
    'mesh',
    '--type=merge',
    '-p',
    JSON.stringify({ spec: { publicRanges: [...ranges] } }),
  ]);
}

const RELAY_SELECTOR = 'peertunnel.io/relay-of';

/**
 * Lab-only, the cloud's part: the load balancer of the relay's `LoadBalancer` Service is the lab
 * host of the node it runs on (README announces that address). A cloud controller would write the
 * ingress; kube-proxy then forwards the address's port to the relay pod.
 */
export async function labOnlyLoadBalancer(c: Cluster, ip: string): Promise<void> {
  const name = await eventually('the relay Service', async () => {
    const out = await c.kubectl(['-n', APP_NS, 'get', 'services', '-l', RELAY_SELECTOR, '-o', 'name']);
    return out.trim() === '' ? undefined : out.trim().split('\n')[0];
  });
  await c.kubectl([
    '-n',
    APP_NS,
    'patch',
    name,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status: { loadBalancer: { ingress: [{ ip }] } } }),
  ]);
}

/**
 * Lab-only: the relay runs on the internet-facing node `edge`, everything else on `inner` (a cloud
 * would place it behind its load balancer instead). While `steps` create and roll the relay, only
 * `edge` takes pods; once its Deployment has rolled out, only `inner` does.
 */
export async function labOnlyPlaceRelay<T>(
  c: Cluster,
  edge: string,
  inner: string,
  steps: () => Promise<T>,
): Promise<T> {
  await c.kubectl(['uncordon', edge]);
  await c.kubectl(['cordon', inner]);
  const result = await steps();
  const deployments = await c.kubectl([
    '-n',
    APP_NS,
    'get',
    'deployments',
    '-l',
    RELAY_SELECTOR,
    '-o',
    'name',
  ]);
  for (const d of deployments.trim().split('\n').filter(Boolean)) {
    await c.kubectl(['-n', APP_NS, 'rollout', 'status', d, '--timeout=180s']);
  }
  await c.kubectl(['cordon', edge]);
  await c.kubectl(['uncordon', inner]);
  return result;
}

/** `kubectl -n shop wait --for=condition=Ready peernetwork/mesh` */
export const waitNetworkReady = (c: Cluster) =>
  c.kubectl(['-n', APP_NS, 'wait', '--for=condition=Ready', '--timeout=60s', 'peernetwork/mesh']);

/** `kubectl apply -f FILE` */
export const applyFile = (c: Cluster, file: string) => c.kubectl(['apply', '-f', file]);

/** RELAY=$(kubectl -n shop get peernetwork mesh -o jsonpath='{.status.relayAddresses[0]}') */
export async function relayAddress(b: Cluster): Promise<string> {
  return eventually('status.relayAddresses of cluster B', async () => {
    const out = await b.kubectl([
      '-n',
      APP_NS,
      'get',
      'peernetwork',
      'mesh',
      '-o',
      'jsonpath={.status.relayAddresses[0]}',
    ]);
    return out.trim() === '' ? undefined : out.trim();
  });
}

/** sed "s|RELAY_ADDRESS|$RELAY|" examples/two-clusters/cluster-a/network.yaml | kubectl apply -f - */
export async function applyNetworkA(a: Cluster, relay: string): Promise<void> {
  const text = await readFile(FILES.networkA, 'utf8');
  if (!text.includes(RELAY_PLACEHOLDER)) throw new Error(`${FILES.networkA} lost its ${RELAY_PLACEHOLDER}`);
  await a.kubectl(['apply', '-f', '-'], text.replaceAll(RELAY_PLACEHOLDER, relay));
}

export interface TableRow {
  [column: string]: string;
}

/** A `kubectl get` table, by upper-case column name (no value of these tables has a space). */
export function parseTable(text: string): TableRow[] {
  const [header, ...lines] = text.trim().split('\n');
  const cols = (header ?? '').trim().split(/\s+/);
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const cells = l.trim().split(/\s+/);
      return Object.fromEntries(cols.map((c, i) => [c, cells[i] ?? '']));
    });
}

/** `kubectl -n shop get peertunnels`, parsed. */
export async function getPeerTunnels(c: Cluster): Promise<{ text: string; rows: TableRow[] }> {
  const text = await c.kubectl(['-n', APP_NS, 'get', 'peertunnels']);
  return { text, rows: parseTable(text) };
}
