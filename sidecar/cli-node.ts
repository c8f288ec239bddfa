/** `peertunnel node`: load the config, start the node, stop it cleanly on SIGTERM/SIGINT. */
import { writeFile } from 'node:fs/promises';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { loadConfig } from './config.js';
import { createLogger } from './logger.js';
import { PeerNode } from './peer-node.js';

export async function runNode(configFile: string | undefined, env: NodeJS.ProcessEnv): Promise<number> {
  const config = await loadConfig(configFile, env);
  const logger = createLogger(config.log.level, { role: config.role });
  const node = await PeerNode.start({ config, logger, env });
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      logger.info({ event: 'signal', signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  // A stuck shutdown must not keep a pod Terminating for its whole grace period.
  const force = setTimeout(() => process.exit(0), 5_000);
  force.unref();
  await node.stop();
  return 0;
}

/** Writes a new Ed25519 identity; returns its peer ID. */
export async function writeIdentity(file: string): Promise<string> {
  const key = await generateKeyPair('Ed25519');
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' });
  return peerIdFromPrivateKey(key).toString();
}
