/**
 * Which swarm key a pnet connection uses, when a node holds two (a key rollover,
 * docs/architecture.md "Swarm-key rollover"). pnet sends no key id: after the two nonces it is
 * ciphertext. What tells the keys apart is the first plaintext every libp2p connection carries:
 * multistream-select's header, which the dialer sends first and the responder answers first. The
 * responder decrypts those 20 bytes under each key it holds, each with a fresh keystream, and goes
 * on with the one that yields the header; the dialer checks the responder's first 20 bytes the
 * same way under the key it chose.
 */
import { SWARM_KEY_NAMES, type SwarmKeyName } from '../../contracts/swarm-keys.js';
import { XSalsa20Stream } from './xsalsa20.js';

export { SWARM_KEY_NAMES, type SwarmKeyName };

/** multistream-select's header: the varint length 19, `/multistream/1.0.0`, a newline. */
export const MSS_HEADER: Uint8Array = new TextEncoder().encode('\x13/multistream/1.0.0\n');

export interface PnetKey {
  name: SwarmKeyName;
  /** The 32-byte secret. */
  secret: Uint8Array;
}

/** The first bytes decrypted under no key this node holds: another network, or a stranger. */
export class SwarmKeyMismatchError extends Error {
  override readonly name = 'SwarmKeyMismatchError';
}

/** The responder closed, or answered with bytes that are not the header, under the key we dialled with. */
export class SwarmKeyRejectedError extends Error {
  override readonly name = 'SwarmKeyRejectedError';
}

export function isHeader(plain: Uint8Array): boolean {
  if (plain.byteLength !== MSS_HEADER.byteLength) return false;
  let diff = 0;
  for (let i = 0; i < plain.byteLength; i++) diff |= (plain[i] ?? 0) ^ (MSS_HEADER[i] ?? 0);
  return diff === 0;
}

/**
 * The key under which `peek` (the peer's first MSS_HEADER.byteLength ciphertext bytes after its
 * nonce) is the header, with its keystream advanced past them; undefined when none is. The other
 * keys' keystreams are zeroed at once.
 */
export function identifyKey(
  peek: Uint8Array,
  remoteNonce: Uint8Array,
  keys: readonly PnetKey[],
): { key: PnetKey; inbound: XSalsa20Stream } | undefined {
  if (peek.byteLength !== MSS_HEADER.byteLength) return undefined;
  let found: { key: PnetKey; inbound: XSalsa20Stream } | undefined;
  for (const key of keys) {
    const stream = new XSalsa20Stream(remoteNonce, key.secret);
    const plain = stream.xor(peek, new Uint8Array(peek.byteLength));
    if (found === undefined && isHeader(plain)) found = { key, inbound: stream };
    else stream.final();
  }
  return found;
}

/** The order a dialler tries its keys in: the newest first (docs/architecture.md, Swarm-key rollover). */
export function dialOrder(keys: readonly PnetKey[]): PnetKey[] {
  return [...keys].sort((a, b) => SWARM_KEY_NAMES.indexOf(b.name) - SWARM_KEY_NAMES.indexOf(a.name));
}
