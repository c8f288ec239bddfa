/**
 * The node's pnet protector (sidecar/crypto/pnet-protector.ts): its XSalsa20 against libsodium's documented one-shot
 * function and the NaCl test vector, and the wire protocol against stock @libp2p/pnet both ways
 * (each side's first bytes multistream-select's header, as libp2p sends them).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import type { MessageStream } from '@libp2p/interface';
import { preSharedKey } from '@libp2p/pnet';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { generateSwarmKey, parseSwarmKey, swarmKeySecret } from '../../../../sidecar/config/swarm-key.js';
import { MSS_HEADER } from '../../../../sidecar/crypto/pnet-keys.js';
import { NonceTimeoutError, PnetProtector } from '../../../../sidecar/crypto/pnet-protector.js';
import { sodium } from '../../../../sidecar/crypto/sodium.js';
import { XSalsa20Stream } from '../../../../sidecar/crypto/xsalsa20.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

/** One-shot xsalsa20 of a whole message: the reference the running stream must match. */
function oneShot(message: Uint8Array, nonce: Uint8Array, key: Uint8Array): Buffer {
  const out = Buffer.alloc(message.byteLength);
  sodium.crypto_stream_xor(out, message, nonce, key);
  return out;
}

describe('XSalsa20Stream', () => {
  it('gives the NaCl test vector (stream3: first 32 keystream bytes)', () => {
    const key = hex('1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389');
    const nonce = hex('69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37');
    const expected = 'eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880';
    expect(Buffer.from(new XSalsa20Stream(nonce, key).xor(new Uint8Array(32))).toString('hex')).toBe(
      expected,
    );
    expect(oneShot(new Uint8Array(32), nonce, key).toString('hex')).toBe(expected);
  });

  it('matches the one-shot function however the input is split', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const message = randomBytes(300_000);
    const expected = oneShot(message, nonce, key);
    // Splits that cross 64-byte blocks in odd places, a 0-byte update, and large ones.
    const sizes = [1, 63, 64, 65, 0, 1_000, 65_535, 65_536, 65_537, 3, 7];
    const stream = new XSalsa20Stream(nonce, key);
    const got = Buffer.alloc(message.byteLength);
    let at = 0;
    for (let i = 0; at < message.byteLength; i++) {
      const n = Math.min(sizes[i % sizes.length] ?? 1, message.byteLength - at);
      stream.xor(message.subarray(at, at + n), got.subarray(at, at + n));
      at += n;
    }
    expect(got.equals(expected)).toBe(true);
  });

  it('xors in place by default and leaves the input alone given an output', () => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const plain = randomBytes(5_000);
    const copy = Buffer.from(plain);
    const out = new Uint8Array(plain.byteLength);
    expect(new XSalsa20Stream(nonce, key).xor(plain, out)).toBe(out);
    expect(plain.equals(copy)).toBe(true);
    const buf = Uint8Array.from(plain);
    expect(new XSalsa20Stream(nonce, key).xor(buf)).toBe(buf);
    expect(Buffer.from(buf).equals(Buffer.from(out))).toBe(true);
  });

  it('cannot be used after final()', () => {
    const stream = new XSalsa20Stream(randomBytes(24), randomBytes(32));
    stream.final();
    stream.final();
    expect(() => stream.xor(new Uint8Array(1))).toThrow(/after final/);
  });

  it('refuses a wrong nonce or key length before reaching the binding (which would abort)', () => {
    expect(() => new XSalsa20Stream(randomBytes(23), randomBytes(32))).toThrow(RangeError);
    expect(() => new XSalsa20Stream(randomBytes(24), randomBytes(31))).toThrow(RangeError);
    expect(() =>
      new XSalsa20Stream(randomBytes(24), randomBytes(32)).xor(randomBytes(4), new Uint8Array(3)),
    ).toThrow(RangeError);
  });
});

describe('swarmKeySecret', () => {
  it('takes the 32 bytes of the third line, from text or canonical bytes', () => {
    const text = generateSwarmKey();
    const secret = hex(text.trim().split('\n')[2] ?? '');
    expect(Buffer.from(swarmKeySecret(text)).equals(Buffer.from(secret))).toBe(true);
    expect(Buffer.from(swarmKeySecret(parseSwarmKey(text))).equals(Buffer.from(secret))).toBe(true);
  });
});

/**
 * Sends multistream-select's header (what every libp2p peer sends first, and the protector
 * checks), then random bytes up to `total` in chunks of varied size, honouring backpressure;
 * returns the hash of all of it.
 */
async function sendRandom(stream: MessageStream, total: number): Promise<string> {
  const hash = createHash('sha256');
  const sizes = [1, 17, 1_000, 16_384, 65_536, 24, 4_095];
  hash.update(MSS_HEADER);
  stream.send(MSS_HEADER.slice());
  let sent = MSS_HEADER.byteLength;
  for (let i = 0; sent < total; i++) {
    const chunk = randomBytes(Math.min(sizes[i % sizes.length] ?? 1, total - sent));
    hash.update(chunk);
    sent += chunk.byteLength;
    if (!stream.send(chunk))
      await new Promise((resolve) => stream.addEventListener('drain', resolve, { once: true }));
  }
  return hash.digest('hex');
}

/** Hashes the next `total` bytes that arrive. */
function receiveHash(stream: MessageStream, total: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let got = 0;
    stream.addEventListener('message', (evt) => {
      for (const buf of evt.data instanceof Uint8Array ? [evt.data] : evt.data) {
        hash.update(buf);
        got += buf.byteLength;
      }
      if (got === total) resolve(hash.digest('hex'));
      if (got > total) reject(new Error(`received ${got} > ${total} bytes`));
    });
    stream.addEventListener('close', (evt) => reject(evt.error ?? new Error('closed early')), { once: true });
  });
}

/** Once `protecting` resolves, sends `total` bytes and hashes the `total` that come back. */
async function talk(protecting: Promise<MessageStream>, total: number) {
  const stream = await protecting;
  const received = receiveHash(stream, total);
  const sent = await sendRandom(stream, total);
  return { sent, received: await received };
}

describe('pnet wire protocol against @libp2p/pnet', () => {
  const key = parseSwarmKey(generateSwarmKey());
  const TOTAL = 8 * 1024 * 1024;

  for (const ours of ['outbound', 'inbound'] as const) {
    it(`exchanges hash-checked bytes both ways (ours ${ours})`, async () => {
      const [outbound, inbound] = multiaddrConnectionPair();
      const [oursConn, theirsConn] = ours === 'outbound' ? [outbound, inbound] : [inbound, outbound];
      // Each side starts talking once its own protect() is done (a responder's waits for the
      // dialer's first bytes), as libp2p's upgrade does.
      const [mine, peer] = await Promise.all([
        talk(new PnetProtector({ psk: key }).protect(oursConn), TOTAL),
        talk(preSharedKey({ psk: key })().protect(theirsConn), TOTAL),
      ]);
      expect(mine.received).toBe(peer.sent);
      expect(peer.received).toBe(mine.sent);
    });
  }

  it('is garbage to a peer with another key', async () => {
    const [outbound, inbound] = multiaddrConnectionPair();
    const [a, b] = await Promise.all([
      new PnetProtector({ psk: key }).protect(outbound),
      preSharedKey({ psk: parseSwarmKey(generateSwarmKey()) })().protect(inbound),
    ]);
    const atB = receiveHash(b, 1_000);
    const sent = await sendRandom(a, 1_000);
    expect(await atB).not.toBe(sent);
  });

  it('closes a connection whose peer sends no nonce within the deadline, and says so', async () => {
    const [outbound, inbound] = multiaddrConnectionPair();
    const timeouts: string[] = [];
    const protector = new PnetProtector({
      psk: key,
      nonceTimeoutMs: 200,
      onNonceTimeout: (_addr, direction) => timeouts.push(direction),
    });
    outbound.send(randomBytes(23)); // one byte short
    const started = Date.now();
    await expect(protector.protect(inbound)).rejects.toBeInstanceOf(NonceTimeoutError);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(timeouts).toEqual(['inbound']);
    expect(inbound.status).not.toBe('open');
  });
});
