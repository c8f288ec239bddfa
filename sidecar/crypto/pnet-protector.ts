/**
 * The private-network connection protector: the pnet wire protocol of kubo and go-libp2p (and of
 * @libp2p/pnet), unchanged. Each side sends a random 24-byte nonce; from then on every byte it
 * sends is xored with XSalsa20(own nonce, swarm key) and every byte it receives with
 * XSalsa20(peer's nonce, swarm key). Nothing authenticates here; what it checks is that the first
 * bytes each way decrypt to multistream-select's header, which every libp2p peer sends first.
 *
 * A node may hold two keys during a rollover (docs/architecture.md, Swarm-key rollover): the side
 * that reads first (the responder) decrypts the dialer's first 20 bytes under each and goes on
 * with the one that yields the header; the dialer uses the key its dial attempt names
 * (sidecar/crypto/pnet-dial.ts), else its newest, and checks the responder's answer.
 *
 * Differences from @libp2p/pnet, which it replaces: a native cipher (libsodium) whose state goes
 * with the connection (its key zeroed on close) instead of a WebAssembly one that is never freed;
 * the nonce exchange and the header have a short deadline, because until then anyone who can open
 * TCP to the port holds one of the node's pending-connection slots; a peer under no key of ours is
 * refused there and said so.
 */
import { randomBytes } from 'node:crypto';
import type {
  AbortOptions,
  ConnectionProtector,
  MessageStream,
  MultiaddrConnection,
} from '@libp2p/interface';
import { byteStream } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { swarmKeySecret } from '../config/swarm-key.js';
import { PnetConnection } from './pnet-connection.js';
import { attemptOf } from './pnet-dial.js';
import {
  dialOrder,
  identifyKey,
  MSS_HEADER,
  type PnetKey,
  SwarmKeyMismatchError,
  type SwarmKeyName,
} from './pnet-keys.js';
import { NONCE_LENGTH, XSalsa20Stream } from './xsalsa20.js';

/** How long a peer may take to send its nonce (and, to a responder, its first bytes) unless configured otherwise. */
export const DEFAULT_NONCE_TIMEOUT_MS = 3_000;

/** The peer did not send its 24-byte nonce (or its first bytes) within the deadline. */
export class NonceTimeoutError extends Error {
  constructor(ms: number) {
    super(`no pnet nonce within ${ms} ms`);
    this.name = 'NonceTimeoutError';
  }
}

export interface PnetProtectorInit {
  /** The swarm key: its text or the canonical bytes parseSwarmKey returns. */
  psk: string | Uint8Array;
  /** The next swarm key of a rollover, accepted beside `psk` and dialled with first. */
  nextPsk?: string | Uint8Array | undefined;
  /** Deadline for the peer's nonce, in ms. @default DEFAULT_NONCE_TIMEOUT_MS */
  nonceTimeoutMs?: number;
  /** Called when a connection is closed for a nonce that did not come in time. */
  onNonceTimeout?: (remoteAddr: Multiaddr, direction: MessageStream['direction']) => void;
  /** Called once a connection's key is known: its first bytes decrypted to the header under it. */
  onKey?: (connection: MultiaddrConnection, key: SwarmKeyName) => void;
  /** Called when a dialer's first bytes decrypt under no key of ours (the connection is closed). */
  onMismatch?: (remoteAddr: Multiaddr) => void;
}

function isMultiaddrConnection(s: MessageStream): s is MultiaddrConnection {
  return (s as Partial<MultiaddrConnection>).remoteAddr !== undefined;
}

export class PnetProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'peertunnel/pnet';
  /** Newest first. */
  readonly keys: readonly PnetKey[];
  private readonly nonceTimeoutMs: number;
  private readonly init: PnetProtectorInit;

  constructor(init: PnetProtectorInit) {
    const keys: PnetKey[] = [{ name: 'current', secret: swarmKeySecret(init.psk) }];
    if (init.nextPsk !== undefined) keys.push({ name: 'next', secret: swarmKeySecret(init.nextPsk) });
    this.keys = dialOrder(keys);
    this.nonceTimeoutMs = init.nonceTimeoutMs ?? DEFAULT_NONCE_TIMEOUT_MS;
    this.init = init;
  }

  async protect(connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    if (!isMultiaddrConnection(connection))
      throw new TypeError('pnet protects a multiaddr connection (a raw transport connection)');
    // The side that reads first: the responder (also a dialer told to run the upgrade as one).
    const initiator = (options as { initiator?: boolean } | undefined)?.initiator;
    const reads = initiator === false || (initiator !== true && connection.direction === 'inbound');
    const localNonce = randomBytes(NONCE_LENGTH);
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new NonceTimeoutError(this.nonceTimeoutMs)),
      this.nonceTimeoutMs,
    );
    const signal =
      options?.signal === undefined ? deadline.signal : AbortSignal.any([deadline.signal, options.signal]);
    // A nonce and the header are all we need before the cipher takes over: never buffer more than a little.
    const bytes = byteStream(connection, { maxBufferSize: 64 * 1024 });
    let remoteNonce: Uint8Array;
    let peek: Uint8Array | undefined;
    try {
      const [received] = await Promise.all([
        bytes.read({ bytes: NONCE_LENGTH, signal }),
        bytes.write(localNonce, { signal }),
      ]);
      remoteNonce = received.subarray();
      if (reads) peek = (await bytes.read({ bytes: MSS_HEADER.byteLength, signal })).subarray();
    } catch (err) {
      if (deadline.signal.aborted) {
        this.init.onNonceTimeout?.(connection.remoteAddr, connection.direction);
        connection.abort(deadline.signal.reason as Error);
        throw deadline.signal.reason;
      }
      connection.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    if (peek !== undefined) return this.respond(connection, bytes.unwrap(), localNonce, remoteNonce, peek);
    const attempt = attemptOf(options);
    const key = this.keys.find((k) => k.name === attempt?.key) ?? (this.keys[0] as PnetKey);
    if (attempt !== undefined) attempt.key = key.name;
    return new PnetConnection({
      inner: bytes.unwrap(),
      inbound: new XSalsa20Stream(remoteNonce, key.secret),
      outbound: new XSalsa20Stream(localNonce, key.secret),
      check: (accepted) => {
        if (accepted) this.init.onKey?.(connection, key.name);
        else if (attempt !== undefined) attempt.rejected = true;
      },
    });
  }

  /** The responder's side: the key is the one under which the dialer's first bytes are the header. */
  private respond(
    connection: MultiaddrConnection,
    inner: MultiaddrConnection,
    localNonce: Uint8Array,
    remoteNonce: Uint8Array,
    peek: Uint8Array,
  ): MessageStream {
    const found = identifyKey(peek, remoteNonce, this.keys);
    if (found === undefined) {
      this.init.onMismatch?.(connection.remoteAddr);
      const err = new SwarmKeyMismatchError('the first bytes decrypt under no swarm key of this node');
      connection.abort(err);
      throw err;
    }
    this.init.onKey?.(connection, found.key.name);
    return new PnetConnection({
      inner,
      inbound: found.inbound,
      outbound: new XSalsa20Stream(localNonce, found.key.secret),
      initial: MSS_HEADER.slice(),
    });
  }
}

/** libp2p's `connectionProtector` option. */
export function pnetProtector(init: PnetProtectorInit): () => ConnectionProtector {
  const protector = new PnetProtector(init);
  return () => protector;
}
