/**
 * Noise's ChaCha20-Poly1305 on a native implementation for every message size, through
 * @chainsafe/libp2p-noise's `crypto` option. Its default uses OpenSSL only from 1,200 bytes on,
 * importing the raw key on every call, and a WebAssembly cipher below that, which covers most
 * request/response traffic. Everything but the AEAD (hash, HKDF, X25519) stays the default.
 *
 * Two native candidates are kept so the micro-bench (test/bench/cipher-micro.ts) can compare them:
 * libsodium's detached AEAD (one native call per message) and OpenSSL with a KeyObject cached per
 * key. libsodium measured faster at every size, so `nativeNoiseCrypto` uses it.
 *
 * Decryption writes into `dst` only when noise passes one (transport messages, whose ciphertext is
 * read once); handshake messages get a new buffer because noise hashes their ciphertext afterwards.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import type { ICryptoInterface } from '@chainsafe/libp2p-noise';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import { sodium } from './sodium.js';

type Aead = Pick<ICryptoInterface, 'chaCha20Poly1305Encrypt' | 'chaCha20Poly1305Decrypt'>;
type Bytes = Parameters<ICryptoInterface['chaCha20Poly1305Encrypt']>[0];

const TAG = 16;

function contiguous(data: Bytes): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray();
}

/** Whether `dst` may receive the plaintext of `c` (the same memory from the same start, or none shared). */
function usableDst(dst: Uint8Array | undefined, c: Uint8Array, length: number): dst is Uint8Array {
  if (dst === undefined || dst.byteLength < length) return false;
  if (dst.buffer !== c.buffer) return true;
  const [d0, c0] = [dst.byteOffset, c.byteOffset];
  return d0 === c0 || d0 + length <= c0 || c0 + c.byteLength <= d0;
}

/** libsodium's detached ChaCha20-Poly1305 (IETF, 96-bit nonce: noise's). */
export const sodiumAead: Aead = {
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    const m = contiguous(plaintext);
    const out = Buffer.allocUnsafe(m.byteLength + TAG);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
      out.subarray(0, m.byteLength),
      out.subarray(m.byteLength),
      m,
      ad,
      null,
      nonce,
      k,
    );
    return out;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k, dst) {
    const c = contiguous(ciphertext);
    const length = c.byteLength - TAG;
    if (length < 0) throw new Error('Invalid chacha20poly1305 decryption: shorter than the tag');
    const m = usableDst(dst, c, length) ? dst.subarray(0, length) : Buffer.allocUnsafe(length);
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(
      m,
      null,
      c.subarray(0, length),
      c.subarray(length),
      ad,
      nonce,
      k,
    );
    return m;
  },
};

/** Noise keeps one key array per direction for a session, so a key's KeyObject is made once. */
const keyObjects = new WeakMap<Uint8Array, KeyObject>();
function keyObject(k: Uint8Array): KeyObject {
  let key = keyObjects.get(k);
  if (key === undefined) {
    key = createSecretKey(k);
    keyObjects.set(k, key);
  }
  return key;
}

/** OpenSSL's ChaCha20-Poly1305 with a cached KeyObject per key. */
export const opensslAead: Aead = {
  chaCha20Poly1305Encrypt(plaintext, nonce, ad, k) {
    const m = contiguous(plaintext);
    const cipher = createCipheriv('chacha20-poly1305', keyObject(k), nonce, { authTagLength: TAG });
    cipher.setAAD(ad, { plaintextLength: m.byteLength });
    const out = Buffer.allocUnsafe(m.byteLength + TAG);
    // chacha20 is a stream cipher: update() returns exactly as many bytes as it was given.
    out.set(cipher.update(m));
    cipher.final();
    out.set(cipher.getAuthTag(), m.byteLength);
    return out;
  },
  chaCha20Poly1305Decrypt(ciphertext, nonce, ad, k) {
    const c = contiguous(ciphertext);
    const length = c.byteLength - TAG;
    if (length < 0) throw new Error('Invalid chacha20poly1305 decryption: shorter than the tag');
    const decipher = createDecipheriv('chacha20-poly1305', keyObject(k), nonce, { authTagLength: TAG });
    decipher.setAAD(ad, { plaintextLength: length });
    decipher.setAuthTag(c.subarray(length));
    const out = decipher.update(c.subarray(0, length));
    decipher.final();
    return out;
  },
};

/** noise's `crypto` option: the default with a native AEAD for every message size. */
export const nativeNoiseCrypto: ICryptoInterface = { ...defaultCrypto, ...sodiumAead };
