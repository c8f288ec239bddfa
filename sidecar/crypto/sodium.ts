/**
 * The few libsodium functions the node uses, from sodium-native (prebuilt binaries inside its npm
 * package: nothing is downloaded or compiled at install). Typed here because the package ships no
 * type declarations.
 *
 * The stateful xsalsa20 functions are the binding's own (`crypto_stream_xor_init/update/final`):
 * the package's JS wrappers of them (`crypto_stream_xor_wrap_*`) check the state against a
 * constant the binding does not export, so every call throws. The binding asserts sizes in C
 * (a mismatch aborts the process), so callers pass exact sizes: see XSalsa20Stream.
 */
import { createRequire } from 'node:module';

export interface SodiumNative {
  crypto_stream_KEYBYTES: number;
  crypto_stream_NONCEBYTES: number;
  crypto_stream_xor_STATEBYTES: number;
  /** One-shot xsalsa20: c = m xor keystream(n, k) from block 0. */
  crypto_stream_xor(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_stream_xor_init(state: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  /** Continues the keystream where the previous update stopped (any length, c and m equal length). */
  crypto_stream_xor_update(state: Uint8Array, c: Uint8Array, m: Uint8Array): void;
  /** Zeroes the key and nonce kept in the state. */
  crypto_stream_xor_final(state: Uint8Array): void;
  crypto_aead_chacha20poly1305_ietf_ABYTES: number;
  crypto_aead_chacha20poly1305_ietf_KEYBYTES: number;
  crypto_aead_chacha20poly1305_ietf_NPUBBYTES: number;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
    c: Uint8Array,
    mac: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | null,
    nsec: null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
  /** Throws when the tag does not verify; m and c may be the same memory. */
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): void;
}

export const sodium = createRequire(import.meta.url)('sodium-native') as SodiumNative;
