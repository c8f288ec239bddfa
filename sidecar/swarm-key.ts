/**
 * The kubo/go-libp2p swarm.key format:
 *   /key/swarm/psk/1.0.0/
 *   /base16/
 *   <64 hex digits>
 * Parsing normalises line endings and whitespace so a key pasted into a Secret still matches
 * byte-for-byte what @libp2p/pnet expects on every member.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SwarmKeyError } from './errors.js';

const HEADER = '/key/swarm/psk/1.0.0/';
const ENCODING = '/base16/';

/** Returns a new swarm key as text, ending in a newline. */
export function generateSwarmKey(): string {
  return `${HEADER}\n${ENCODING}\n${randomBytes(32).toString('hex')}\n`;
}

/** Parses swarm.key text into the canonical bytes that @libp2p/pnet's `preSharedKey` takes. */
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

export interface SwarmKeySource {
  file?: string | undefined;
  env?: string | undefined;
}

/** Reads the key from its configured source; errors say which source and why. */
export async function readSwarmKey(source: SwarmKeySource, env: NodeJS.ProcessEnv): Promise<Uint8Array> {
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
    if (text === undefined || text.trim() === '')
      throw new SwarmKeyError(`environment variable ${source.env} is empty or unset`);
    return parseSwarmKey(text);
  }
  throw new SwarmKeyError('no source: set swarmKey.file or swarmKey.env');
}
