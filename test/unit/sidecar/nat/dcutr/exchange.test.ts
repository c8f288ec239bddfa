import { describe, expect, it } from '@jest/globals';
import { streamPair } from '@libp2p/utils';
import {
  exchangeAsInitiator,
  exchangeAsResponder,
  messageChannel,
} from '../../../../../sidecar/nat/dcutr/exchange.js';
import { encodeMessage } from '../../../../../sidecar/nat/dcutr/protocol.js';

const B_ADDRS = [Uint8Array.of(1), Uint8Array.of(2)];
const A_ADDRS = [Uint8Array.of(3)];
/** Accepts every address (as numbers, to compare). */
const all = (addrs: readonly Uint8Array[]) => addrs.map((a) => a[0] ?? -1);

describe('the DCUtR exchange on a stream', () => {
  it('B sends CONNECT, A answers CONNECT, B sends SYNC: each gets the other’s addresses', async () => {
    const [b, a] = await streamPair();
    const deadline = AbortSignal.timeout(2_000);
    const [atB, atA] = await Promise.all([
      exchangeAsInitiator(messageChannel(b), B_ADDRS, all, deadline),
      exchangeAsResponder(messageChannel(a), A_ADDRS, all, deadline),
    ]);
    expect(atB.addrs).toEqual([3]);
    expect(atB.rttMs).toBeGreaterThanOrEqual(0);
    expect(atA).toEqual([1, 2]);
  });

  it('B sends no SYNC when A offered nothing it can dial; A waits until its deadline', async () => {
    const [b, a] = await streamPair();
    const atB = exchangeAsInitiator(messageChannel(b), B_ADDRS, () => [], AbortSignal.timeout(2_000));
    const atA = exchangeAsResponder(messageChannel(a), A_ADDRS, all, AbortSignal.timeout(300));
    await expect(atB).rejects.toMatchObject({ name: 'HolePunchSetupError' });
    await expect(atA).rejects.toMatchObject({ name: 'TimeoutError' });
  });

  it('A refuses a CONNECT without addresses', async () => {
    const [b, a] = await streamPair();
    const deadline = AbortSignal.timeout(2_000);
    await messageChannel(b).send({ type: 'CONNECT', addrs: [] }, deadline);
    await expect(exchangeAsResponder(messageChannel(a), A_ADDRS, all, deadline)).rejects.toMatchObject({
      name: 'DcutrMessageError',
    });
  });

  it('B refuses an answer of the wrong type', async () => {
    const [b, a] = await streamPair();
    const deadline = AbortSignal.timeout(2_000);
    const atB = exchangeAsInitiator(messageChannel(b), B_ADDRS, all, deadline);
    const channelA = messageChannel(a);
    await channelA.receive('CONNECT', deadline);
    await channelA.send({ type: 'SYNC', addrs: [] }, deadline);
    await expect(atB).rejects.toMatchObject({ name: 'DcutrMessageError' });
  });

  it('B gives up at its deadline when A never answers', async () => {
    const [b] = await streamPair();
    const started = Date.now();
    await expect(
      exchangeAsInitiator(messageChannel(b), B_ADDRS, all, AbortSignal.timeout(200)),
    ).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('refuses a message whose length prefix is over the bound, before reading it', async () => {
    const [b, a] = await streamPair();
    // varint 5000 = 0x88 0x27, then the start of a body.
    b.send(Uint8Array.of(0x88, 0x27, ...encodeMessage({ type: 'CONNECT', addrs: A_ADDRS })));
    await expect(messageChannel(a).receive('CONNECT', AbortSignal.timeout(2_000))).rejects.toMatchObject({
      name: 'InvalidDataLengthError',
    });
  });
});
