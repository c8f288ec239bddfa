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
