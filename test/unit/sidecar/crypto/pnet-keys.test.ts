/**
 * Two swarm keys on one protector (sidecar/crypto/pnet-keys.ts, pnet-protector.ts,
 * pnet-connection.ts): the responder tells the dialer's key from its first bytes, the dialer
 * learns that the responder turned its key down, and bytes after the header arrive intact under
 * either key (the keystream goes on where the peek stopped).
 */
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import type { MessageStream, MultiaddrConnection } from '@libp2p/interface';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { generateSwarmKey, parseSwarmKey } from '../../../../sidecar/config/swarm-key.js';
import { withAttempt } from '../../../../sidecar/crypto/pnet-dial.js';
import {
  dialOrder,
  MSS_HEADER,
  SwarmKeyMismatchError,
  type SwarmKeyName,
} from '../../../../sidecar/crypto/pnet-keys.js';
import { PnetProtector } from '../../../../sidecar/crypto/pnet-protector.js';

const A = parseSwarmKey(generateSwarmKey());
const B = parseSwarmKey(generateSwarmKey());
const STRANGER = parseSwarmKey(generateSwarmKey());

/** A protector that records what it says about connections. */
function recording(psk: Uint8Array, nextPsk?: Uint8Array) {
  const keys: SwarmKeyName[] = [];
  const mismatches: string[] = [];
  const protector = new PnetProtector({
    psk,
    nextPsk,
    nonceTimeoutMs: 2_000,
    onKey: (_c, key) => keys.push(key),
    onMismatch: (addr) => mismatches.push(addr.toString()),
  });
  return { protector, keys, mismatches };
}

/** Sends the header and then `n` random bytes; resolves with the hash of what was sent. */
function sendAll(stream: MessageStream, n: number): string {
  const body = randomBytes(n);
  stream.send(MSS_HEADER.slice());
  stream.send(body);
  return createHash('sha256').update(MSS_HEADER).update(body).digest('hex');
}

/** The hash of the next `n` bytes, or the error the stream closes with. */
function receiveAll(stream: MessageStream, n: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    let got = 0;
    stream.addEventListener('message', (evt) => {
      for (const buf of evt.data instanceof Uint8Array ? [evt.data] : evt.data) {
        hash.update(buf);
        got += buf.byteLength;
      }
      if (got === n) resolve(hash.digest('hex'));
    });
    stream.addEventListener('close', (evt) => reject(evt.error ?? new Error('closed')), { once: true });
  });
}

/** Dials `responder` from `dialer` (optionally naming the key), then talks both ways. */
async function connect(
  dialer: PnetProtector,
  responder: PnetProtector,
  key?: SwarmKeyName,
): Promise<{ dialled: string; answered: string; rejected: boolean | undefined }> {
  const [outbound, inbound] = multiaddrConnectionPair();
  const [opts, attempt] = key === undefined ? [{}, undefined] : withAttempt({}, key);
  const dialing = dialer.protect(outbound, opts);
  const responding = responder.protect(inbound);
  const out = await dialing;
  const sentOut = sendAll(out, 5_000);
  const into = await responding;
  const atResponder = receiveAll(into, MSS_HEADER.byteLength + 5_000);
  const atDialer = receiveAll(out, MSS_HEADER.byteLength + 7_000);
  const sentIn = sendAll(into, 7_000);
  expect(await atResponder).toBe(sentOut);
  expect(await atDialer).toBe(sentIn);
  return { dialled: sentOut, answered: sentIn, rejected: attempt?.rejected };
}

describe('a protector holding the current and the next key', () => {
  it('accepts a dialer holding only the current key, and says so', async () => {
    const both = recording(A, B);
    const old = recording(A);
    await connect(old.protector, both.protector);
    expect(both.keys).toEqual(['current']);
    expect(old.keys).toEqual(['current']);
  });

  it('accepts a dialer holding only the next key, and says so', async () => {
    const both = recording(A, B);
    const fresh = recording(B);
    await connect(fresh.protector, both.protector);
    expect(both.keys).toEqual(['next']);
  });

  it('refuses a dialer under a key it does not hold, closes the connection and says so', async () => {
    const both = recording(A, B);
    const stranger = recording(STRANGER);
    const [outbound, inbound] = multiaddrConnectionPair();
    const responding = both.protector.protect(inbound);
    const out = await stranger.protector.protect(outbound);
    out.send(MSS_HEADER.slice());
    await expect(responding).rejects.toBeInstanceOf(SwarmKeyMismatchError);
    expect(both.mismatches).toHaveLength(1);
    expect(both.keys).toEqual([]);
    expect(inbound.status).not.toBe('open');
  });

  it('dials with the next key first; a responder without it turns the attempt down', async () => {
    const both = recording(A, B);
    const old = recording(A);
    const [outbound, inbound] = multiaddrConnectionPair();
    const [opts, attempt] = withAttempt({}, both.protector.keys[0]?.name ?? 'current');
    expect(attempt.key).toBe('next');
    const responding = old.protector.protect(inbound);
    const out = await both.protector.protect(outbound, opts);
    const closed = new Promise((resolve) => out.addEventListener('close', resolve, { once: true }));
    out.send(MSS_HEADER.slice());
    await expect(responding).rejects.toBeInstanceOf(SwarmKeyMismatchError);
    await closed;
    expect(attempt.rejected).toBe(true);
    expect(both.keys).toEqual([]);
    // The same dialer under the current key gets through.
    const again = await connect(both.protector, old.protector, 'current');
    expect(again.rejected).toBe(false);
    expect(both.keys).toEqual(['current']);
  });

  it('turns an attempt down when the responder answers under another key', async () => {
    const both = recording(A, B);
    const [outbound, inbound] = multiaddrConnectionPair();
    const [opts, attempt] = withAttempt({}, 'next');
    // A responder that does not check (as one of an older version): it answers under its own key.
    const peer = new PnetProtector({ psk: STRANGER }).protect(
      inbound as MultiaddrConnection,
      {
        initiator: true,
      } as never,
    );
    const out = await both.protector.protect(outbound, opts);
    const closed = new Promise((resolve) => out.addEventListener('close', resolve, { once: true }));
    (await peer).send(MSS_HEADER.slice());
    await closed;
    expect(attempt.rejected).toBe(true);
  });

  it('orders keys newest first for dialling', () => {
    const secret = new Uint8Array(32);
    expect(
      dialOrder([
        { name: 'current', secret },
        { name: 'next', secret },
      ]).map((k) => k.name),
    ).toEqual(['next', 'current']);
  });
});
