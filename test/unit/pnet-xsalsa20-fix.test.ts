/**
 * The xsalsa20 work-around pnet runs on (sidecar/pnet-xsalsa20-fix.ts): chunked updates give the
 * same keystream as unchunked ones, and an update without an output xors in place.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, expect, it } from '@jest/globals';
import '../../sidecar/pnet-xsalsa20-fix.js';

interface Cipher {
  update(input: Uint8Array, output?: Uint8Array): Uint8Array;
}
const require = createRequire(import.meta.resolve('@libp2p/pnet'));
const xsalsa20 = require('xsalsa20') as (nonce: Uint8Array, key: Uint8Array) => Cipher;

const key = randomBytes(32);
const nonce = randomBytes(24);
/** Sizes that cross the 64-byte block and the 64 KiB chunk in odd places. */
const SIZES = [1, 63, 64, 65, 1_000, 65_535, 65_536, 65_537, 200_000, 3];

describe('pnet xsalsa20 work-around', () => {
  it('xors in place when no output is given, with the keystream of separate outputs', () => {
    const inPlace = xsalsa20(nonce, key);
    const separate = xsalsa20(nonce, key);
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const buf = Uint8Array.from(plain);
      const expected = separate.update(plain, new Uint8Array(size));
      const got = inPlace.update(buf);
      expect(got).toBe(buf);
      expect(Buffer.from(got).equals(Buffer.from(expected))).toBe(true);
      expect(Buffer.from(got).equals(plain)).toBe(false);
    }
  });

  it('leaves the input alone when an output is given', () => {
    const plain = randomBytes(100_000);
    const copy = Buffer.from(plain);
    const out = new Uint8Array(plain.length);
    expect(xsalsa20(nonce, key).update(plain, out)).toBe(out);
    expect(plain.equals(copy)).toBe(true);
  });

  it('decrypts what it encrypted, across many updates', () => {
    const enc = xsalsa20(nonce, key);
    const dec = xsalsa20(nonce, key);
    for (const size of SIZES) {
      const plain = randomBytes(size);
      const wire = enc.update(Uint8Array.from(plain));
      expect(Buffer.from(dec.update(wire)).equals(plain)).toBe(true);
    }
  });
});
