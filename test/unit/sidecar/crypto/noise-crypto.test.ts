/**
 * Noise's native AEAD (sidecar/crypto/noise-crypto.ts): the RFC 8439 vector, and each native
 * implementation against noise's own default both ways, tampering rejected, in-place decryption
 * only where noise asks for it.
 */
import { randomBytes } from 'node:crypto';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { describe, expect, it } from '@jest/globals';
import { Uint8ArrayList } from 'uint8arraylist';
import { nativeNoiseCrypto, opensslAead, sodiumAead } from '../../../../sidecar/crypto/noise-crypto.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const IMPLS = [
  ['sodium', sodiumAead],
  ['openssl', opensslAead],
  ['nativeNoiseCrypto', nativeNoiseCrypto],
] as const;
const SIZES = [0, 1, 64, 1_199, 1_200, 4_096, 65_519];

describe('noise ChaCha20-Poly1305', () => {
  it('gives the RFC 8439 §2.8.2 vector, like the default', () => {
    const k = hex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
    const nonce = hex('070000004041424344454647');
    const ad = hex('50515253c0c1c2c3c4c5c6c7');
    const plain = new TextEncoder().encode(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    );
    const expected = Buffer.from(defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray());
    expect(expected.subarray(0, 16).toString('hex')).toBe('d31a8d34648e60db7b86afbc53ef7ec2');
    expect(expected.subarray(-16).toString('hex')).toBe('1ae10b594f09e26a7e902ecbd0600691');
    for (const [, impl] of IMPLS) {
      const got = Buffer.from(impl.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray());
      expect(got.equals(expected)).toBe(true);
    }
  });

  for (const [name, impl] of IMPLS) {
    it(`${name}: what one encrypts the other decrypts, at every size, from arrays and lists`, () => {
      for (const size of SIZES) {
        const k = randomBytes(32);
        const nonce = randomBytes(12);
        const ad = randomBytes(32);
        const plain = randomBytes(size);
        const ours = impl.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray();
        const theirs = defaultCrypto.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray();
        expect(Buffer.from(ours).equals(Buffer.from(theirs))).toBe(true);
        const back = defaultCrypto.chaCha20Poly1305Decrypt(Uint8Array.from(ours), nonce, ad, k).subarray();
        expect(Buffer.from(back).equals(plain)).toBe(true);
        const split = new Uint8ArrayList(theirs.subarray(0, size >> 1), theirs.subarray(size >> 1));
        const mine = impl.chaCha20Poly1305Decrypt(split, nonce, ad, k).subarray();
        expect(Buffer.from(mine).equals(plain)).toBe(true);
        const listIn = new Uint8ArrayList(plain.subarray(0, 3), plain.subarray(3));
        expect(
          Buffer.from(impl.chaCha20Poly1305Encrypt(listIn, nonce, ad, k).subarray()).equals(
            Buffer.from(theirs),
          ),
        ).toBe(true);
      }
    });

    it(`${name}: rejects a tampered tag, ciphertext or associated data`, () => {
      const k = randomBytes(32);
      const nonce = randomBytes(12);
      const ad = randomBytes(32);
      const sealed = Buffer.from(
        defaultCrypto.chaCha20Poly1305Encrypt(randomBytes(1_500), nonce, ad, k).subarray(),
      );
      for (const at of [sealed.length - 1, 0, 700]) {
        const bad = Buffer.from(sealed);
        bad[at] = (bad[at] ?? 0) ^ 1;
        expect(() => impl.chaCha20Poly1305Decrypt(bad, nonce, ad, k)).toThrow();
      }
      expect(() => impl.chaCha20Poly1305Decrypt(sealed, nonce, randomBytes(32), k)).toThrow();
      expect(() => impl.chaCha20Poly1305Decrypt(sealed.subarray(0, 10), nonce, ad, k)).toThrow();
    });
  }

  it('decrypts into dst when given (transport messages) and leaves the ciphertext alone without (handshake)', () => {
    const k = randomBytes(32);
    const nonce = randomBytes(12);
    const plain = randomBytes(2_000);
    const sealed = Buffer.from(
      sodiumAead.chaCha20Poly1305Encrypt(plain, nonce, new Uint8Array(0), k).subarray(),
    );
    const copy = Buffer.from(sealed);
    const fresh = sodiumAead.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k);
    expect(sealed.equals(copy)).toBe(true);
    expect(Buffer.from(fresh.subarray()).equals(plain)).toBe(true);
    const dst = sealed.subarray(0, plain.length);
    const inPlace = sodiumAead.chaCha20Poly1305Decrypt(sealed, nonce, new Uint8Array(0), k, dst);
    expect(inPlace.subarray().buffer).toBe(sealed.buffer);
    expect(Buffer.from(dst).equals(plain)).toBe(true);
  });

  it('completes a noise handshake and carries data with the default on the other side', async () => {
    const { noise } = await import('@chainsafe/libp2p-noise');
    const { generateKeyPair } = await import('@libp2p/crypto/keys');
    const { peerIdFromPrivateKey } = await import('@libp2p/peer-id');
    const { defaultLogger } = await import('@libp2p/logger');
    const { multiaddrConnectionPair } = await import('@libp2p/utils');
    const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519')]);
    const [a, b] = keys.map((privateKey, i) =>
      noise(i === 0 ? { crypto: nativeNoiseCrypto } : {})({
        privateKey,
        peerId: peerIdFromPrivateKey(privateKey),
        logger: defaultLogger(),
        upgrader: { getStreamMuxers: () => new Map() },
      } as unknown as Parameters<ReturnType<typeof noise>>[0]),
    );
    const [outbound, inbound] = multiaddrConnectionPair();
    const [sa, sb] = await Promise.all([
      a?.secureOutbound(outbound, { remotePeer: peerIdFromPrivateKey(keys[1] as (typeof keys)[1]) }),
      b?.secureInbound(inbound),
    ]);
    const message = randomBytes(200_000);
    const received: Buffer[] = [];
    const got = new Promise<void>((resolve) =>
      sb?.connection.addEventListener('message', (evt) => {
        received.push(Buffer.from(evt.data.subarray()));
        if (Buffer.concat(received).length >= message.length) resolve();
      }),
    );
    sa?.connection.send(message);
    await got;
    expect(Buffer.concat(received).equals(message)).toBe(true);
  });
});
