import { describe, expect, it, jest } from '@jest/globals';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { defaultLogger } from '@libp2p/logger';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import type { MessageChannel } from '../../../../../sidecar/nat/dcutr/exchange.js';
import {
  initiate,
  type PunchSteps,
  respond,
  upgradeUnilaterally,
} from '../../../../../sidecar/nat/dcutr/punch.js';

const PEER = peerIdFromString('12D3KooWK8D783S9ij9FZYk6t8tfbKQUs1Sd6HPfa4wuv2odRAPP');
const TARGET = multiaddr(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`);

const relayed = (status: Connection['status'] = 'open') =>
  ({ remotePeer: PEER, status, remoteAddr: multiaddr('/p2p-circuit') }) as unknown as Connection;
const direct = () => ({ remotePeer: PEER, status: 'open', remoteAddr: TARGET }) as unknown as Connection;

function fakeStream() {
  return { close: jest.fn(async () => undefined), abort: jest.fn() };
}

/** A channel whose receives answer in order: addresses, or an error to throw. */
function scripted(answers: Array<Uint8Array[] | Error>): MessageChannel & { sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    send: async (m) => {
      sent.push(m.type);
    },
    receive: async () => {
      const next = answers.shift();
      if (next === undefined || next instanceof Error) throw next ?? new Error('nothing scripted');
      return next;
    },
  };
}

function steps(over: Partial<PunchSteps> & { channels?: MessageChannel[] } = {}) {
  const streams: ReturnType<typeof fakeStream>[] = [];
  const channels = over.channels ?? [];
  const dial = jest.fn<PunchSteps['dial']>(async () => direct());
  const sleep = jest.fn<PunchSteps['sleep']>(async () => undefined);
  const s: PunchSteps = {
    tries: 3,
    timeoutMs: 1_000,
    log: defaultLogger().forComponent('test:dcutr'),
    offer: () => [Uint8Array.of(1)],
    accept: (addrs: readonly Uint8Array[], _peer: PeerId): Multiaddr[] => (addrs.length > 0 ? [TARGET] : []),
    openStream: async () => {
      const stream = fakeStream();
      streams.push(stream);
      return stream as unknown as Stream;
    },
    channel: () => channels.shift() ?? scripted([]),
    dial,
    shouldStop: () => false,
    sleep,
    unilateralTargets: async () => [],
    dialDirect: async () => direct(),
    ...over,
  };
  return { s, streams, dial, sleep };
}

describe('B: one round of tries', () => {
  it('tries again on a new stream after a failed try, and dials as the responder', async () => {
    const first = scripted([new Error('reset')]);
    const second = scripted([[Uint8Array.of(3)]]);
    const { s, streams, dial, sleep } = steps({ channels: [first, second] });
    const result = await initiate(relayed(), s);
    expect(result.tries).toBe(2);
    expect(result.connection).toBeDefined();
    expect(streams[0]?.abort).toHaveBeenCalled();
    expect(streams[1]?.close).toHaveBeenCalled();
    expect(second.sent).toEqual(['CONNECT', 'SYNC']);
    expect(sleep).toHaveBeenCalledTimes(1);
    expect(dial).toHaveBeenCalledWith(PEER, [TARGET], expect.objectContaining({ responder: true }));
  });

  it('makes at most `tries` tries and returns the last error', async () => {
    const dial = jest.fn<PunchSteps['dial']>(async () => Promise.reject(new Error('no SYN-ACK')));
    const { s, streams } = steps({ dial });
    s.channel = () => scripted([[Uint8Array.of(3)]]);
    const result = await initiate(relayed(), s);
    expect(result.tries).toBe(3);
    expect(result.connection).toBeUndefined();
    expect(String(result.error)).toContain('no SYN-ACK');
    expect(dial).toHaveBeenCalledTimes(3);
    expect(streams).toHaveLength(3);
    expect(streams.every((st) => st.abort.mock.calls.length === 1)).toBe(true);
  });

  it('stops trying when told to (relayed connection gone, node stopping, already direct)', async () => {
    let calls = 0;
    const { s, streams } = steps({ shouldStop: () => calls++ > 0 });
    s.channel = () => scripted([new Error('reset')]);
    const result = await initiate(relayed(), s);
    expect(result.tries).toBe(1);
    expect(streams).toHaveLength(1);
  });

  it('sends no SYNC and dials nothing when A offered nothing dialable', async () => {
    const channel = scripted([[]]);
    const { s, dial } = steps({ tries: 1, channels: [channel] });
    const result = await initiate(relayed(), s);
    expect(result.connection).toBeUndefined();
    expect(result.error).toMatchObject({ name: 'HolePunchSetupError' });
    expect(channel.sent).toEqual(['CONNECT']);
    expect(dial).not.toHaveBeenCalled();
  });
});

describe('A: answering a CONNECT', () => {
  it('answers, dials at SYNC as the initiator, and closes its end of the stream', async () => {
    const channel = scripted([[Uint8Array.of(1)], []]);
    const { s, dial } = steps({ channels: [channel] });
    const stream = fakeStream();
    const connection = await respond(stream as unknown as Stream, relayed(), s);
    expect(connection.remoteAddr).toBe(TARGET);
    expect(channel.sent).toEqual(['CONNECT']);
    expect(dial).toHaveBeenCalledWith(PEER, [TARGET], expect.objectContaining({ responder: false }));
    expect(stream.close).toHaveBeenCalled();
  });

  it('throws when the dial fails (the service counts it and resets the stream)', async () => {
    const { s } = steps({
      channels: [scripted([[Uint8Array.of(1)], []])],
      dial: jest.fn(async () => Promise.reject(new Error('timeout'))),
    });
    await expect(respond(fakeStream() as unknown as Stream, relayed(), s)).rejects.toThrow('timeout');
  });
});

describe('B: the direct upgrade before any punch', () => {
  it('dials the peer’s known public addresses and keeps a direct result only', async () => {
    const { s } = steps({ unilateralTargets: async () => [TARGET] });
    expect(await upgradeUnilaterally(relayed(), s)).toBeDefined();
    expect(await upgradeUnilaterally(relayed(), { ...s, dialDirect: async () => relayed() })).toBeUndefined();
    const failing = { ...s, dialDirect: async () => Promise.reject(new Error('refused')) };
    expect(await upgradeUnilaterally(relayed(), failing)).toBeUndefined();
  });

  it('does not dial without targets, or when the peer is unknown', async () => {
    const dialDirect = jest.fn<PunchSteps['dialDirect']>(async () => direct());
    const { s } = steps({ dialDirect });
    expect(await upgradeUnilaterally(relayed(), s)).toBeUndefined();
    const unknown = { ...s, unilateralTargets: async () => Promise.reject(new Error('NotFoundError')) };
    expect(await upgradeUnilaterally(relayed(), unknown)).toBeUndefined();
    expect(dialDirect).not.toHaveBeenCalled();
  });
});
