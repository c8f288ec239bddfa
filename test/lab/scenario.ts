/**
 * Shared pieces of the lab scenarios with real node processes (holepunch, relay-failover):
 * the traffic tool run on a host, its servers, the relays, the sidecar config and the teardown.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LabNodeProcess, startLabNode } from '../helpers/lab-node.js';
import { eventually } from '../helpers/node-process.js';
import { type Lab, type LabHost, LineReader, labTool, waitForExit } from './index.js';

export const MiB = 1024 * 1024;
export const KEY_ENV = 'PEERTUNNEL_SWARM_KEY';

/** The last line test/lab/tools/traffic.ts prints: its result. */
export interface TrafficResult {
  ok: boolean;
  bytes?: number;
  ms?: number;
  ttfbMs?: number | null;
  rounds?: number;
  error?: string | null;
  expected?: string;
  answered?: string;
  received?: string;
}

/** Runs the traffic tool on a host (a client of a forwarded local port). */
export async function traffic(host: LabHost, args: string[], timeoutMs = 60_000): Promise<TrafficResult> {
  const r = await host.exec(process.execPath, [labTool('traffic.ts'), ...args], { timeoutMs });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as TrafficResult;
  } catch {
    return { ok: false, error: `no result (exit ${r.code}): ${r.stderr.slice(-300)}` };
  }
}

/**
 * Polls a forwarded local port with a 64 KiB echo (each try bounded to 5 s) until one comes back
 * intact; resolves with the time it did (Date.now()), rejects after `timeoutMs`.
 */
export function forwardsAgain(
  host: LabHost,
  localPort: number,
  timeoutMs: number,
  what: string,
): Promise<number> {
  return eventually(
    async () => {
      const r = await traffic(host, ['echo', String(localPort), '65536'], 5_000);
      return r.ok ? Date.now() : undefined;
    },
    timeoutMs,
    what,
  );
}

/** Starts a traffic server per named port on a host, pushing each child to `servers` once listening. */
export async function startTrafficServers(
  host: LabHost,
  ports: Record<string, number>,
  servers: ChildProcess[],
): Promise<void> {
  for (const [name, port] of Object.entries(ports)) {
    const child = host.spawnNode(labTool('traffic.ts'), ['serve', String(port), name]);
    servers.push(child);
    await new LineReader(child, `${name} server`).next((l) => l.startsWith('listening'), 10_000, 'listening');
  }
}

/** Starts the two relays (relay0, relay1), pushing each to `relays`. */
export async function startRelays(
  lab: Lab,
  env: Record<string, string>,
  relays: LabNodeProcess[],
): Promise<void> {
  for (const i of [0, 1]) {
    relays.push(
      await startLabNode(
        lab.relay(i),
        {
          role: 'relay',
          swarmKey: { env: KEY_ENV },
          listen: ['/ip4/0.0.0.0/tcp/4001'],
          publicRanges: [...lab.publicRanges],
        },
        { env },
      ),
    );
  }
}

/** The relays' addresses, to bootstrap from. */
export const relayBootstrap = (lab: Lab, relays: LabNodeProcess[]): string[] =>
  relays.map((r, i) => `/ip4/${lab.relay(i).ip}/tcp/4001/p2p/${r.peerId}`);

/** The common part of a site node's config. */
export const sidecarConfig = (lab: Lab, bootstrap: string[]) => ({
  swarmKey: { env: KEY_ENV },
  listen: ['/ip4/0.0.0.0/tcp/4001'],
  bootstrap,
  publicRanges: [...lab.publicRanges],
  log: { level: 'info' as const },
});

/**
 * Teardown: every node's log for a failure's post-mortem (LAB_LOG_DIR=/tmp/x keeps them), then
 * stops the nodes, the traffic servers and the lab.
 */
export async function stopScenario(
  lab: Lab | undefined,
  named: Record<string, LabNodeProcess | undefined>,
  servers: ChildProcess[],
): Promise<void> {
  const dir = process.env.LAB_LOG_DIR;
  if (dir !== undefined) {
    mkdirSync(dir, { recursive: true });
    for (const [name, n] of Object.entries(named))
      if (n !== undefined)
        writeFileSync(join(dir, `${name}.log`), n.logs.map((l) => JSON.stringify(l)).join('\n'));
  }
  for (const n of Object.values(named)) await n?.stop().catch(() => undefined);
  for (const c of servers) {
    c.kill('SIGTERM');
    await waitForExit(c, 2_000);
  }
  await lab?.stop();
}
