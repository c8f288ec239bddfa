/**
 * The expose handler gives back each stream's slot (stream-limits.ts) and its target socket
 * however the stream ends: closed, reset by the forwarder, gone while the target was still
 * connecting, or refused by the target. Each case runs more streams one after another than one
 * peer's share, through the real handler, an in-memory stream pair and a real TCP target.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Connection, Stream, StreamHandler, StreamMessageEvent } from '@libp2p/interface';
import { streamPair } from '@libp2p/utils';
import { Registry } from 'prom-client';
import { createSidecarMetrics, type SidecarMetrics } from '../../../../sidecar/admin/metrics.js';
import {
  serviceProtocol,
  serviceProtocolAck,
  TARGET_CONNECTED,
  TARGET_UNREACHABLE,
} from '../../../../sidecar/discovery/service-directory.js';
import { silentLogger } from '../../../../sidecar/node/logger.js';
import { ExposeHandler } from '../../../../sidecar/tunnel/expose.js';
import { StreamLimiter } from '../../../../sidecar/tunnel/stream-limits.js';

const SERVICE = 'svc';
const ACK = serviceProtocolAck(SERVICE);
const PLAIN = serviceProtocol(SERVICE);
const SHARE = 2;
/** More streams than one peer's share, so a slot that is not given back shows. */
const N = 3 * SHARE;
const forwarder = { remotePeer: { toString: () => 'forwarder' } } as unknown as Connection;

interface Target {
  port: number;
  /** Target-side sockets still open. */
  open: Set<Socket>;
  server: Server;
}

/** Like most servers: answers what it is sent (here: echoes it), never closes first. */
async function echoTarget(): Promise<Target> {
  const open = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, r));
  const addr = server.address();
  return { port: typeof addr === 'object' && addr !== null ? addr.port : 0, open, server };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const t = await echoTarget();
  await new Promise((r) => t.server.close(r));
  return t.port;
}

interface Harness {
  expose: ExposeHandler;
  limiter: StreamLimiter;
  metrics: SidecarMetrics;
  /** Hands the handler a new stream on `protocol` as libp2p would; returns the forwarder's end. */
  open(protocol: string): Promise<{ client: Stream; server: Stream }>;
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function harness(port: number): Promise<Harness> {
  let handler: StreamHandler | undefined;
  const libp2p = {
    handle: async (_: string[], h: StreamHandler) => {
      handler = h;
    },
    unhandle: async () => undefined,
  };
  const limiter = new StreamLimiter({ streams: 2 * SHARE, streamsPerPeer: SHARE });
  const metrics = createSidecarMetrics(new Registry());
  const expose = new ExposeHandler(
    { libp2p: libp2p as never, metrics, logger: silentLogger(), limiter },
    { name: SERVICE, host: '127.0.0.1', port, idleTimeoutSeconds: 0 },
    { probeBackoffMs: 60_000, maxProbeBackoffMs: 60_000 },
  );
  await expose.start();
  cleanups.push(() => expose.stop());
  return {
    expose,
    limiter,
    metrics,
    open: async (protocol) => {
      const [client, server] = await streamPair();
      server.protocol = protocol;
      if (handler === undefined) throw new Error('no handler registered');
      void handler(server, forwarder);
      return { client, server };
    },
  };
}

/** Everything the forwarder's end receives until it closes, and whether it closed in error. */
function received(stream: Stream): Promise<{ bytes: Buffer; error: boolean }> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    stream.addEventListener('message', (evt: StreamMessageEvent) => {
      parts.push(Buffer.from(evt.data.subarray()));
    });
    stream.addEventListener(
      'close',
      (evt) => resolve({ bytes: Buffer.concat(parts), error: evt.error !== undefined }),
      { once: true },
    );
  });
}

function firstMessage(stream: Stream): Promise<Buffer> {
  return new Promise((resolve) =>
    stream.addEventListener('message', (evt) => resolve(Buffer.from(evt.data.subarray())), { once: true }),
  );
}

/** Waits until no stream holds a slot or a target socket, and no tunnel is counted active. */
async function allGivenBack(h: Harness, target?: Target): Promise<void> {
  const deadline = Date.now() + 3_000;
  const state = async () => ({
    slots: h.limiter.active,
    targetSockets: h.expose.status().activeConnections,
    targetSide: target?.open.size ?? 0,
    tunnels: (await h.metrics.streamsActive.get()).values.reduce((n, v) => n + v.value, 0),
  });
  const none = { slots: 0, targetSockets: 0, targetSide: 0, tunnels: 0 };
  while (Date.now() < deadline) {
    if (JSON.stringify(await state()) === JSON.stringify(none)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(await state()).toEqual(none);
}

async function refusedForLimits(h: Harness): Promise<number> {
  const { values } = await h.metrics.streamsRefused.get();
  return values.reduce((n, v) => n + v.value, 0);
}

describe('expose stream slots', () => {
  it.each([
    ['1.1.0', ACK],
    ['1.0.0', PLAIN],
  ])('come back when the tunnel closes (%s)', async (_, protocol) => {
    const target = await echoTarget();
    cleanups.push(() => new Promise((r) => target.server.close(r)));
    const h = await harness(target.port);
    const prefix = protocol === ACK ? Buffer.of(TARGET_CONNECTED) : Buffer.alloc(0);
    for (let i = 0; i < N; i++) {
      const { client } = await h.open(protocol);
      const got = received(client);
      client.send(Buffer.from(`ping ${i}`));
      await client.close();
      expect(await got).toEqual({ bytes: Buffer.concat([prefix, Buffer.from(`ping ${i}`)]), error: false });
      await allGivenBack(h, target);
    }
    expect(await refusedForLimits(h)).toBe(0);
  });

  it.each([
    ['1.1.0', ACK],
    ['1.0.0', PLAIN],
  ])('come back when the forwarder resets the tunnel (%s)', async (_, protocol) => {
    const target = await echoTarget();
    cleanups.push(() => new Promise((r) => target.server.close(r)));
    const h = await harness(target.port);
    for (let i = 0; i < N; i++) {
      const { client } = await h.open(protocol);
      const echoed = firstMessage(client);
      client.send(Buffer.from('ping'));
      await echoed;
      client.abort(new Error('client went away'));
      await allGivenBack(h, target);
    }
    expect(await refusedForLimits(h)).toBe(0);
  });

  it.each([
    ['1.1.0', ACK],
    ['1.0.0', PLAIN],
  ])('come back when the stream is gone before the target accepted (%s)', async (_, protocol) => {
    const target = await echoTarget();
    cleanups.push(() => new Promise((r) => target.server.close(r)));
    const h = await harness(target.port);
    for (let i = 0; i < N; i++) {
      const { client, server } = await h.open(protocol);
      const got = received(client);
      // What the muxer does to each stream of a connection that closes (a relay dies, the
      // forwarder's pod goes away) while the handler waits for its target to accept.
      server.abort(new Error('connection closed'));
      expect((await got).error).toBe(true);
      await allGivenBack(h, target);
    }
    expect(await refusedForLimits(h)).toBe(0);
    // And the peer still gets a tunnel.
    const { client } = await h.open(ACK);
    const got = received(client);
    client.send(Buffer.from('after'));
    await client.close();
    expect((await got).bytes).toEqual(Buffer.concat([Buffer.of(TARGET_CONNECTED), Buffer.from('after')]));
    await allGivenBack(h, target);
  });

  it.each([
    ['1.1.0', ACK],
    ['1.0.0', PLAIN],
  ])('come back when the target refuses (%s)', async (_, protocol) => {
    const h = await harness(await closedPort());
    for (let i = 0; i < N; i++) {
      const { client } = await h.open(protocol);
      if (protocol === ACK) {
        expect(await firstMessage(client)).toEqual(Buffer.of(TARGET_UNREACHABLE));
        client.abort(new Error('exposer could not serve the stream')); // as a forwarder does
      } else expect(await received(client)).toEqual({ bytes: Buffer.alloc(0), error: true });
      await allGivenBack(h);
    }
    expect(h.expose.status().targetFailures).toBe(N);
    expect(await refusedForLimits(h)).toBe(0);
  });
});
