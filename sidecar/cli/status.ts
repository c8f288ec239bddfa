/** `peertunnel status`: a human summary of a running node's /status. */
import type { PeerNodeStatus } from '../node/peer-node.js';

export async function printStatus(admin: string, json: boolean): Promise<number> {
  const res = await fetch(`http://${admin}/status`, { signal: AbortSignal.timeout(5_000) });
  const status = (await res.json()) as PeerNodeStatus;
  if (json) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return 0;
  }
  const lines = [
    `peer      ${status.peerId} (${status.role}, v${status.version})`,
    `ready     ${status.ready ? 'yes' : `no: ${status.notReady.join('; ')}`}`,
    `dht       ${status.dht.protocol} as ${status.dht.mode}${status.dht.announced ? '' : ' (exposed names not announced yet)'}`,
    `peers     ${status.peers.length === 0 ? 'none' : ''}`,
    ...status.peers.map((p) => `  ${p.peer}  ${p.path}  ${p.remoteAddr}  ${p.streams} streams`),
    ...status.exposes.map(
      (e) =>
        `expose    ${e.name} -> ${e.host}:${e.port}  active ${e.activeConnections}, served ${e.servedConnections}`,
    ),
    ...status.forwards.map(
      (f) =>
        `forward   ${f.bind}:${f.localPort} -> ${f.name}  ${f.listening ? 'listening' : 'NOT listening'}, ${f.providers.length} provider(s)` +
        (f.providers.length === 0
          ? '  <- no provider: is the service exposed and the network reachable?'
          : ''),
    ),
    ...status.forwards.flatMap((f) =>
      f.providers.map(
        (p) =>
          `  ${p.peer}  ${p.connected ? p.path : 'not connected'}${p.healthy ? '' : `  backing off after ${p.failures} failure(s)`}`,
      ),
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return status.ready ? 0 : 1;
}
