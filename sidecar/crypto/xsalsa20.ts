/**
 * A running XSalsa20 keystream (pnet's cipher: one per direction of a connection) on libsodium.
 * The state is an ordinary JS buffer, so it goes with the connection's garbage; `final()` zeroes
 * the key in it as soon as the connection closes.
 */
import { sodium } from './sodium.js';

export const NONCE_LENGTH = 24;
export const KEY_LENGTH = 32;

export class XSalsa20Stream {
  private readonly state = new Uint8Array(sodium.crypto_stream_xor_STATEBYTES);
  private done = false;

  constructor(nonce: Uint8Array, key: Uint8Array) {
    if (nonce.byteLength !== NONCE_LENGTH) throw new RangeError(`nonce must be ${NONCE_LENGTH} bytes`);
    if (key.byteLength !== KEY_LENGTH) throw new RangeError(`key must be ${KEY_LENGTH} bytes`);
    sodium.crypto_stream_xor_init(this.state, nonce, key);
  }

  /** Xors `input` with the next input.byteLength keystream bytes into `output` (in place by default). */
  xor(input: Uint8Array, output: Uint8Array = input): Uint8Array {
    if (this.done) throw new Error('xsalsa20 stream used after final()');
    if (output.byteLength !== input.byteLength) throw new RangeError('output and input lengths differ');
    if (input.byteLength > 0) sodium.crypto_stream_xor_update(this.state, output, input);
    return output;
  }

  /** Forgets the key; the stream cannot be used again. Idempotent. */
  final(): void {
    if (this.done) return;
    this.done = true;
    sodium.crypto_stream_xor_final(this.state);
  }

  get finalized(): boolean {
    return this.done;
  }
}
