/**
 * A member node that asks a peer for one protocol and prints what happened as JSON:
 *   node probe-protocol.js <swarm-key-env> <peer multiaddr> <protocol>
 * Run as its own process by tests that need a peer behaving unlike a normal sidecar.
 */

import { multiaddr } from '@multiformats/multiaddr';
import { parseConfig } from '../../sidecar/config/config.js';
import { readSwarmKey } from '../../sidecar/config/swarm-key.js';
import { createNode, loadIdentity } from '../../sidecar/node/libp2p-node.js';

const [keyEnv = 'K', target = '', protocol = ''] = process.argv.slice(2);
const config = parseConfig({ swarmKey: { env: keyEnv }, listen: ['/ip4/127.0.0.1/tcp/0'] });
const node = await createNode({
  config,
  psk: await readSwarmKey(config.swarmKey, process.env),
  privateKey: await loadIdentity(config),
});
let result: { result: string; error?: string };
try {
  const stream = await node.dialProtocol(multiaddr(target), protocol, {
    signal: AbortSignal.timeout(10_000),
  });
  result = { result: 'ok' };
  await stream.close();
} catch (err) {
  const name = err instanceof Error ? err.name : 'Error';
  result = {
    result: name === 'UnsupportedProtocolError' ? 'refused' : 'error',
    error: `${name}: ${String(err)}`,
  };
}
process.stdout.write(`${JSON.stringify(result)}\n`);
await node.stop();
process.exit(0);
