import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { RoundBook } from '../../../../../sidecar/nat/dcutr/rounds.js';

function book(now: { t: number }) {
  return new RoundBook({
    maxFailedRounds: 3,
    windowMs: 600_000,
    retryDelayMs: 2_000,
    triesPerRound: 3,
    now: () => now.t,
  });
}

describe('hole punch rounds per peer', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('runs one round at a time per peer', () => {
    const b = book({ t: 0 });
    expect(b.verdict('p')).toBe('start');
    b.begin('p');
    expect(b.verdict('p')).toBe('busy');
    expect(b.verdict('q')).toBe('start');
    b.end('p');
    expect(b.verdict('p')).toBe('start');
  });

  it('retries after 2 s, then 4 s, and gives up at the third failed round', () => {
    const b = book({ t: 0 });
    expect(b.nextDelay(b.fail('p'))).toBe(2_000);
    expect(b.nextDelay(b.fail('p'))).toBe(4_000);
    expect(b.nextDelay(b.fail('p'))).toBeUndefined();
    expect(b.verdict('p')).toBe('gave_up');
    expect(b.gaveUp()).toEqual(['p']);
  });

  it('tries again once the oldest failure leaves the window', () => {
    const now = { t: 0 };
    const b = book(now);
    for (let i = 0; i < 3; i++) b.fail('p');
    now.t = 600_000;
    expect(b.verdict('p')).toBe('start');
    expect(b.gaveUp()).toEqual([]);
  });

  it('forgets a peer once it is direct', () => {
    const b = book({ t: 0 });
    b.fail('p');
    b.fail('p');
    b.forget('p');
    expect(b.nextDelay(b.fail('p'))).toBe(2_000);
  });

  it('answers (A) until B failed three tries in each of its three rounds', () => {
    const b = book({ t: 0 });
    for (let i = 0; i < 8; i++) b.fail('p');
    expect(b.answerRefused('p')).toBe(false);
    b.fail('p');
    expect(b.answerRefused('p')).toBe(true);
  });

  it('runs a retry once, replaces a waiting one, and stop() cancels them', () => {
    jest.useFakeTimers();
    const b = book({ t: 0 });
    const first = jest.fn();
    const second = jest.fn();
    b.retry('p', 2_000, first);
    b.retry('p', 2_000, second);
    jest.advanceTimersByTime(2_000);
    expect(first).not.toHaveBeenCalled();
    expect(second).toHaveBeenCalledTimes(1);
    const third = jest.fn();
    b.retry('q', 1_000, third);
    b.stop();
    jest.advanceTimersByTime(5_000);
    expect(third).not.toHaveBeenCalled();
  });

  it('keeps no entry for a peer with nothing left to remember', () => {
    const now = { t: 0 };
    const b = book(now);
    b.begin('p');
    b.end('p');
    b.fail('q');
    now.t = 700_000;
    expect(b.gaveUp()).toEqual([]);
    expect((b as unknown as { peers: Map<string, unknown> }).peers.size).toBe(0);
  });
});
