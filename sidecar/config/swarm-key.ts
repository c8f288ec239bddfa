/**
 * The kubo/go-libp2p swarm.key format:
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits>
 * Parsing normalises line endings and whitespace so a key pasted into a Secret still matches
 * byte-for-byte on every member (kubo, go-libp2p and the node's own pnet protector).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SwarmKeyError } from '../node/errors.js';

const HEADER = '/key/swarm/psk/1.0.0/';
const ENCODING = '/base16/';

/** Returns a new swarm key as text, ending in a newline. */
export function generateSwarmKey(): string {
  return `${HEADER}\n${ENCODING}\n${randomBytes(32).toString('hex')}\n`;
}

/** Parses swarm.key text into the canonical bytes the node's pnet protector takes. */
export function parseSwarmKey(text: string): Uint8Array {
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  if (lines.length !== 3)
    throw new SwarmKeyError(`expected 3 lines (${HEADER}, ${ENCODING}, 64 hex digits), got ${lines.length}`);
  const [header, encoding, hex] = lines as [string, string, string];
  if (header !== HEADER) throw new SwarmKeyError(`expected first line ${HEADER}`);
  if (encoding !== ENCODING)
    throw new SwarmKeyError(`expected second line ${ENCODING} (only base16 is supported)`);
  if (!/^[0-9a-fA-F]{64}$/.test(hex))
    throw new SwarmKeyError('expected the third line to be 64 hex digits (32 bytes)');
  return new TextEncoder().encode(`${HEADER}\n${ENCODING}\n${hex.toLowerCase()}`);
}

/** The 32-byte secret of a swarm key (its text or the canonical bytes parseSwarmKey returns). */
export function swarmKeySecret(key: string | Uint8Array): Uint8Array {
  const canonical = new TextDecoder().decode(
    parseSwarmKey(typeof key === 'string' ? key : new TextDecoder().decode(key)),
  );
  return Uint8Array.from(Buffer.from(canonical.slice(canonical.lastIndexOf('\n') + 1), 'hex'));
}

export interface SwarmKeySource {
  file?: string | undefined;
  env?: string | undefined;
}

/**
 * Reads the key from its configured source; errors say which source and why, and name `field`
 * when it is not the network's own key (`nextSwarmKey`).
 */
export async function readSwarmKey(
  source: SwarmKeySource,
  env: NodeJS.ProcessEnv,
  field?: string,
): Promise<Uint8Array> {
  try {
    return await readSource(source, env);
  } catch (err) {
    if (field === undefined || !(err instanceof SwarmKeyError)) throw err;
    throw new SwarmKeyError(`${field}: ${err.message.replace(/^invalid swarm key: /, '')}`);
  }
}

async function readSource(source: SwarmKeySource, env: NodeJS.ProcessEnv): Promise<Uint8Array> {
  if (source.file !== undefined) {
    let text: string;
    try {
      text = await readFile(source.file, 'utf8');
    } catch (err) {
      throw new SwarmKeyError(
        `cannot read ${source.file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
    return parseSwarmKey(text);
  }
  if (source.env !== undefined) {
    const text = env[source.env];
    // Kept nowhere else: a child process, a heap dump or a debug print of process.env must not
    // carry it. (/proc/<pid>/environ still shows the initial environment: a file is safer.)
    // Only process.env's copy: the demo hands several in-process nodes one env object of its own.
    delete process.env[source.env];
    if (text === undefined || text.trim() === '')
      throw new SwarmKeyError(`environment variable ${source.env} is empty or unset`);
    return parseSwarmKey(text);
  }
  throw new SwarmKeyError('no source: set swarmKey.file or swarmKey.env');
}
