/**
 * A pnet-protected connection: what it sends and receives goes through the two XSalsa20
 * keystreams (sidecar/crypto/pnet-protector.ts makes it). On a dialled connection it also checks
 * the responder's first bytes against multistream-select's header (sidecar/crypto/pnet-keys.ts)
 * before handing any of them on: a responder that holds another key answers with garbage or
 * closes, and the dial is then known to have failed on the key, not on anything after it.
 */
import type { AbortOptions, MultiaddrConnection } from '@libp2p/interface';
import { AbstractMultiaddrConnection, type SendResult } from '@libp2p/utils';
import { isHeader, MSS_HEADER, SwarmKeyRejectedError } from './pnet-keys.js';
import type { XSalsa20Stream } from './xsalsa20.js';

/** The list type of the base class's own uint8arraylist copy. */
type Chunks = Parameters<AbstractMultiaddrConnection['sendData']>[0];

export interface PnetConnectionInit {
  inner: MultiaddrConnection;
  /** Keystream of what the peer sends (already past any bytes read before). */
  inbound: XSalsa20Stream;
  /** Keystream of what this side sends. */
  outbound: XSalsa20Stream;
  /** Plaintext the peer sent that was read while choosing the key: handed on first. */
  initial?: Uint8Array;
  /** Check the peer's first bytes against the header; told the outcome once. */
  check?: (accepted: boolean) => void;
}

export class PnetConnection extends AbstractMultiaddrConnection {
  private readonly inner: MultiaddrConnection;
  private readonly inbound: XSalsa20Stream;
  private readonly outbound: XSalsa20Stream;
  private check: ((accepted: boolean) => void) | undefined;
  /** While checking: the first bytes (at most the header's length) and the chunks held back. */
  private readonly head = new Uint8Array(MSS_HEADER.byteLength);
  private headLength = 0;
  private held: Uint8Array[] = [];

  constructor(init: PnetConnectionInit) {
    const { inner } = init;
    super({
      remoteAddr: inner.remoteAddr,
      direction: inner.direction,
      log: inner.log.newScope('pnet'),
      inactivityTimeout: inner.inactivityTimeout,
      maxReadBufferLength: inner.maxReadBufferLength,
    });
    this.inner = inner;
    this.inbound = init.inbound;
    this.outbound = init.outbound;
    this.check = init.check;
    // Before the inner listener: bytes the inner connection still holds come after these.
    if (init.initial !== undefined) this.onData(init.initial);
    inner.addEventListener('message', (evt) => {
      if (this.inbound.finalized) return;
      // Decrypted in place: these are the socket's own read buffers, handed over and not read again.
      const data = evt.data;
      if (data instanceof Uint8Array) this.received(this.inbound.xor(data));
      else {
        for (const buf of data) this.received(this.inbound.xor(buf));
      }
    });
    inner.addEventListener('drain', () => this.safeDispatchEvent('drain'));
    inner.addEventListener('close', (evt) => {
      this.forget();
      this.settle(false);
      if (evt.error !== undefined) {
        if (evt.local === true) this.abort(evt.error);
        else this.onRemoteReset();
      } else this.onTransportClosed();
    });
  }

  private received(plain: Uint8Array): void {
    if (this.check === undefined) {
      this.onData(plain);
      return;
    }
    const take = Math.min(plain.byteLength, this.head.byteLength - this.headLength);
    this.head.set(plain.subarray(0, take), this.headLength);
    this.headLength += take;
    this.held.push(plain);
    if (this.headLength < this.head.byteLength) return;
    if (!isHeader(this.head)) {
      this.settle(false);
      this.held = [];
      this.abort(new SwarmKeyRejectedError('the responder answered under another swarm key'));
      return;
    }
    this.settle(true);
    const held = this.held;
    this.held = [];
    for (const chunk of held) this.onData(chunk);
  }

  /** Tells the check its outcome, once. */
  private settle(accepted: boolean): void {
    const check = this.check;
    this.check = undefined;
    check?.(accepted);
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
