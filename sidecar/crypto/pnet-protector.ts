/**
 * The private-network connection protector: the pnet wire protocol of kubo and go-libp2p (and of
 * @libp2p/pnet), unchanged. Each side sends a random 24-byte nonce; from then on every byte it
 * sends is xored with XSalsa20(own nonce, swarm key) and every byte it receives with
 * XSalsa20(peer's nonce, swarm key). Nothing authenticates here: a wrong key only shows as garbage
 * to noise, which then fails.
 *
 * Differences from @libp2p/pnet, which it replaces: a native cipher (libsodium) whose state goes
 * with the connection (its key zeroed on close) instead of a WebAssembly one that is never freed;
 * the nonce exchange has its own short deadline, because until then anyone who can open TCP to
 * the port holds one of the node's pending-connection slots.
 */
import { randomBytes } from 'node:crypto';
import type {
  AbortOptions,
  ConnectionProtector,
  MessageStream,
  MultiaddrConnection,
} from '@libp2p/interface';
import { AbstractMultiaddrConnection, byteStream, type SendResult } from '@libp2p/utils';
import type { Multiaddr } from '@multiformats/multiaddr';
import { swarmKeySecret } from '../config/swarm-key.js';
import { NONCE_LENGTH, XSalsa20Stream } from './xsalsa20.js';

/** How long a peer may take to send its nonce unless configured otherwise. */
export const DEFAULT_NONCE_TIMEOUT_MS = 3_000;

/** The peer did not send its 24-byte nonce within the deadline. */
export class NonceTimeoutError extends Error {
  constructor(ms: number) {
    super(`no pnet nonce within ${ms} ms`);
    this.name = 'NonceTimeoutError';
  }
}

export interface PnetProtectorInit {
  /** The swarm key: its text or the canonical bytes parseSwarmKey returns. */
  psk: string | Uint8Array;
  /** Deadline for the peer's nonce, in ms. @default DEFAULT_NONCE_TIMEOUT_MS */
  nonceTimeoutMs?: number;
  /** Called when a connection is closed for a nonce that did not come in time. */
  onNonceTimeout?: (remoteAddr: Multiaddr, direction: MessageStream['direction']) => void;
}

function isMultiaddrConnection(s: MessageStream): s is MultiaddrConnection {
  return (s as Partial<MultiaddrConnection>).remoteAddr !== undefined;
}

export class PnetProtector implements ConnectionProtector {
  readonly [Symbol.toStringTag] = 'peertunnel/pnet';
  private readonly secret: Uint8Array;
  private readonly nonceTimeoutMs: number;
  private readonly onNonceTimeout: PnetProtectorInit['onNonceTimeout'];

  constructor(init: PnetProtectorInit) {
    this.secret = swarmKeySecret(init.psk);
    this.nonceTimeoutMs = init.nonceTimeoutMs ?? DEFAULT_NONCE_TIMEOUT_MS;
    this.onNonceTimeout = init.onNonceTimeout;
  }

  async protect(connection: MessageStream, options?: AbortOptions): Promise<MessageStream> {
    if (!isMultiaddrConnection(connection))
      throw new TypeError('pnet protects a multiaddr connection (a raw transport connection)');
    const localNonce = randomBytes(NONCE_LENGTH);
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new NonceTimeoutError(this.nonceTimeoutMs)),
      this.nonceTimeoutMs,
    );
    const signal =
      options?.signal === undefined ? deadline.signal : AbortSignal.any([deadline.signal, options.signal]);
    // A nonce is all we need before the cipher takes over: never buffer more than a little.
    const bytes = byteStream(connection, { maxBufferSize: 64 * 1024 });
    let remoteNonce: Uint8Array;
    try {
      const [received] = await Promise.all([
        bytes.read({ bytes: NONCE_LENGTH, signal }),
        bytes.write(localNonce, { signal }),
      ]);
      remoteNonce = received.subarray();
    } catch (err) {
      if (deadline.signal.aborted) {
        this.onNonceTimeout?.(connection.remoteAddr, connection.direction);
        connection.abort(deadline.signal.reason as Error);
        throw deadline.signal.reason;
      }
      connection.abort(err instanceof Error ? err : new Error(String(err)));
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return new PnetConnection(bytes.unwrap(), localNonce, remoteNonce, this.secret);
  }
}

/** The list type of the base class's own uint8arraylist copy. */
type Chunks = Parameters<AbstractMultiaddrConnection['sendData']>[0];

/** The protected connection: what it sends and receives goes through the two keystreams. */
class PnetConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection;
  private readonly inbound: XSalsa20Stream;
  private readonly outbound: XSalsa20Stream;

  constructor(
    inner: MultiaddrConnection,
    localNonce: Uint8Array,
    remoteNonce: Uint8Array,
    secret: Uint8Array,
  ) {
    super({
      remoteAddr: inner.remoteAddr,
      direction: inner.direction,
      log: inner.log.newScope('pnet'),
      inactivityTimeout: inner.inactivityTimeout,
      maxReadBufferLength: inner.maxReadBufferLength,
    });
    this.inner = inner;
    this.inbound = new XSalsa20Stream(remoteNonce, secret);
    this.outbound = new XSalsa20Stream(localNonce, secret);
    inner.addEventListener('message', (evt) => {
      if (this.inbound.finalized) return;
      // Decrypted in place: these are the socket's own read buffers, handed over and not read again.
      const data = evt.data;
      if (data instanceof Uint8Array) this.onData(this.inbound.xor(data));
      else {
        for (const buf of data) this.inbound.xor(buf);
        this.onData(data);
      }
    });
    inner.addEventListener('drain', () => this.safeDispatchEvent('drain'));
    inner.addEventListener('close', (evt) => {
      this.forget();
      if (evt.error !== undefined) {
        if (evt.local === true) this.abort(evt.error);
        else this.onRemoteReset();
      } else this.onTransportClosed();
    });
  }

  private forget(): void {
    this.inbound.final();
    this.outbound.final();
  }

  sendData(data: Chunks): SendResult {
    // Into a new buffer: the caller's buffers may still be its own (a muxer's, a retained frame).
    const out = Buffer.allocUnsafe(data.byteLength);
    let at = 0;
    for (const chunk of data) {
      this.outbound.xor(chunk, out.subarray(at, at + chunk.byteLength));
      at += chunk.byteLength;
    }
    return { sentBytes: data.byteLength, canSendMore: this.inner.send(out) };
  }

  async sendClose(options?: AbortOptions): Promise<void> {
    await this.inner.close(options);
  }

  sendReset(err: Error): void {
    this.forget();
    this.inner.abort(err);
  }

  sendPause(): void {
    this.inner.pause();
  }

  sendResume(): void {
    this.inner.resume();
  }
}

/** libp2p's `connectionProtector` option. */
export function pnetProtector(init: PnetProtectorInit): () => ConnectionProtector {
  const protector = new PnetProtector(init);
  return () => protector;
}
