/** `peertunnel node`: load the config, start the node, stop it cleanly on SIGTERM/SIGINT. */
import { writeFile } from 'node:fs/promises';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { loadConfig } from '../config/config.js';
import { createLogger } from '../node/logger.js';
import { PeerNode } from '../node/peer-node.js';

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
  const drainMs = config.shutdown.drainSeconds * 1000;
  // A stuck shutdown must not keep a pod Terminating for its whole grace period: the drain is
  // bounded, and closing what is left gets 5 s more.
  const force = setTimeout(() => process.exit(0), drainMs + 5_000);
  force.unref();
  // A second signal (an impatient Ctrl-C) skips what is left of the drain.
  const skip = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  await Promise.race([node.drain(drainMs), skip]);
  await node.stop();
  return 0;
}

/** Writes a new Ed25519 identity; returns its peer ID. */
export async function writeIdentity(file: string): Promise<string> {
  const key = await generateKeyPair('Ed25519');
  await writeFile(file, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' });
  return peerIdFromPrivateKey(key).toString();
}
