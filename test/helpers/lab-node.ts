/**
 * `peertunnel node` inside a NAT lab namespace: started through `ip netns exec`, its admin server
 * on 127.0.0.1 inside the namespace, read from inside the namespace too (the lab is never linked
 * to the host's namespace, so the test process cannot reach it directly).
 */
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import type { PeerNodeStatus } from '../../sidecar/node/peer-node.js';
import type { LabNode } from '../lab/index.js';
import { type NodeProcess, parseMetric, startNodeProcess } from './node-process.js';

export interface LabNodeProcess extends NodeProcess {
  host: LabNode;
}

async function fetchInside(host: LabNode, url: string): Promise<string> {
  const r = await host.exec('curl', ['-sS', '--max-time', '5', url], { timeoutMs: 8_000 });
  if (r.code !== 0) throw new Error(`curl ${url} in ${host.name}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return r.stdout;
}

export interface StartLabNodeOptions {
  /** Extra env for the node (the swarm key variable). */
  env?: NodeJS.ProcessEnv;
  startTimeoutMs?: number;
}

export async function startLabNode(
  host: LabNode,
  config: NodeConfigInput,
  options: StartLabNodeOptions = {},
): Promise<LabNodeProcess> {
  // LAB_STDERR_DIR=/tmp/x: each node's stderr (e.g. DEBUG=libp2p:* output) goes to a file there.
  const dir = process.env.LAB_STDERR_DIR;
  const tee = dir === undefined ? [] : ['sh', '-c', `exec "$0" "$@" 2>>"${dir}/${host.ns}-$$.stderr"`];
  const node = await startNodeProcess(config, {
    ...options,
    prefix: ['ip', 'netns', 'exec', host.ns, ...tee],
  });
  const metrics = () => fetchInside(host, `http://${node.admin}/metrics`);
  return {
    ...node,
    host,
    status: async () => JSON.parse(await fetchInside(host, `http://${node.admin}/status`)) as PeerNodeStatus,
    metrics,
    metric: async (name, labels) => parseMetric(await metrics(), name, labels),
  };
}
