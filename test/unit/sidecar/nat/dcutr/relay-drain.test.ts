import { afterEach, beforeEach, describe, expect, it, jest } from '@jest/globals';
import type { Connection, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { RelayDrain } from '../../../../../sidecar/nat/dcutr/relay-drain.js';

const PEER = '12D3KooWK8D783S9ij9FZYk6t8tfbKQUs1Sd6HPfa4wuv2odRAPP';

/** A relayed connection with the given stream protocols on it. */
function relayed(protocols: string[]) {
  const c = {
    remotePeer: peerIdFromString(PEER),
    status: 'open' as Connection['status'],
    streams: protocols.map((protocol) => ({ protocol }) as Stream),
    close: jest.fn(async () => {
      c.status = 'closed';
    }),
    abort: jest.fn(),
  };
  return c;
}

describe('closing the relayed connection after an upgrade', () => {
  let now: number;
  let closed: Array<{ peer: string; waitedMs: number; streamsLeft: number }>;
  let drain: RelayDrain;

  beforeEach(() => {
    jest.useFakeTimers();
    now = 0;
    closed = [];
    drain = new RelayDrain({
      maxWaitMs: 10_000,
      isPayloadStream: (s) => s.protocol?.startsWith('/x/') === true,
      onClosed: (e) => closed.push(e),
      now: () => now,
    });
  });

  afterEach(() => {
    drain.stop();
    jest.useRealTimers();
  });

  const tick = (ms: number) => {
    now += ms;
    jest.advanceTimersByTime(ms);
  };

  it('closes at once when only its own protocols are on it', () => {
    const c = relayed(['/libp2p/dcutr', '/ipfs/id/1.0.0']);
    drain.closeWhenDone(c as unknown as Connection);
    expect(c.close).toHaveBeenCalledTimes(1);
    expect(closed).toEqual([{ peer: PEER, waitedMs: 0, streamsLeft: 0 }]);
  });

  it('waits for the tunnel streams, then closes', () => {
    const c = relayed(['/x/peertunnel/db/1.0.0']);
    drain.closeWhenDone(c as unknown as Connection);
    tick(3_000);
    expect(c.close).not.toHaveBeenCalled();
    c.streams = [];
    tick(1_000);
    expect(c.close).toHaveBeenCalledTimes(1);
    expect(closed).toEqual([{ peer: PEER, waitedMs: 4_000, streamsLeft: 0 }]);
  });

  it('closes anyway after the longest wait, and says how many streams were left', () => {
    const c = relayed(['/x/peertunnel/db/1.0.0', '/x/peertunnel/db/1.0.0']);
    drain.closeWhenDone(c as unknown as Connection);
    drain.closeWhenDone(c as unknown as Connection);
    tick(10_000);
    expect(c.close).toHaveBeenCalledTimes(1);
    expect(closed).toEqual([{ peer: PEER, waitedMs: 10_000, streamsLeft: 2 }]);
  });

  it('does nothing once the connection closed by itself, or after stop()', () => {
    const gone = relayed(['/x/peertunnel/db/1.0.0']);
    drain.closeWhenDone(gone as unknown as Connection);
    gone.status = 'closed';
    tick(2_000);
    const stopped = relayed(['/x/peertunnel/db/1.0.0']);
    drain.closeWhenDone(stopped as unknown as Connection);
    drain.stop();
    stopped.streams = [];
    tick(20_000);
    expect(gone.close).not.toHaveBeenCalled();
    expect(stopped.close).not.toHaveBeenCalled();
    expect(closed).toEqual([]);
  });

  it('aborts a connection whose close fails', async () => {
    const c = relayed([]);
    c.close.mockRejectedValueOnce(new Error('stuck'));
    drain.closeWhenDone(c as unknown as Connection);
    await Promise.resolve();
    await Promise.resolve();
    expect(c.abort).toHaveBeenCalledWith(expect.objectContaining({ name: 'HolePunchSetupError' }));
  });
});
