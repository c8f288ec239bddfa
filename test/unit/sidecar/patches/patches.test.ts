/**
 * Every library patch's target (sidecar/patches/inventory.ts), checked against the installed
 * packages on real objects: two libp2p nodes on 127.0.0.1 with the patched transport, relay,
 * hole puncher and muxer, one connection and one stream between them. An upgrade that removes or
 * reshapes a patched internal fails here. Also: the two data-path fixes still do what they are for.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2';
import { identify } from '@libp2p/identify';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import { LengthPrefixedDecoder } from '@libp2p/utils';
import { createLibp2p } from 'libp2p';
import { SSDP_READ } from '../../../../bin/bundle-plugins.js';
import { AddressPolicy } from '../../../../sidecar/nat/address-policy.js';
import { withConnectTimeout } from '../../../../sidecar/nat/connect-timeout.js';
import { holePunch } from '../../../../sidecar/nat/hole-punch.js';
import { reusePortTcp } from '../../../../sidecar/nat/reuseport-tcp.js';
import { relayHopHandler, reservationStore } from '../../../../sidecar/patches/circuit-relay.js';
import { PATCHES } from '../../../../sidecar/patches/inventory.js';
import { connectionMaConn, connectionMuxer, countSends } from '../../../../sidecar/patches/libp2p.js';
import { expectShape, PatchTargetMissingError } from '../../../../sidecar/patches/patch.js';
import { listenerServer } from '../../../../sidecar/patches/tcp.js';
import {
  applyDecoderFix,
  applyYamuxWindowRule,
  LP_DECODER_FIELDS,
  YAMUX_STREAM_FIELDS,
} from '../../../../sidecar/patches/wire.js';

const PROTOCOL = '/x/peertunnel/shape/1.0.0';

/** A service that only keeps libp2p's components, to reach the transport manager and upgrader. */
interface Probe {
  components: {
    transportManager: { getTransports(): unknown[]; getListeners(): unknown[] };
    upgrader: unknown;
  };
}

async function node(): Promise<Libp2p<{ relay: unknown; holePunch: unknown; probe: Probe }>> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [withConnectTimeout(reusePortTcp(), () => undefined), circuitRelayTransport()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      relay: circuitRelayServer(),
      // Builds our DCUtR service and installs the dial-responder patch: throws if a target is gone.
      holePunch: holePunch({ policy: new AddressPolicy() }),
      probe: (components: Probe['components']): Probe => ({ components }),
    },
  });
}

describe('library patch targets (sidecar/patches/inventory.ts)', () => {
  let a: Awaited<ReturnType<typeof node>>;
  let b: Awaited<ReturnType<typeof node>>;
  let connection: Connection;
  let stream: Stream;

  beforeAll(async () => {
    applyYamuxWindowRule();
    applyDecoderFix();
    a = await node();
    b = await node();
    await b.handle(PROTOCOL, (s) => {
      s.addEventListener('message', (e) => s.send(e.data));
    });
    connection = await a.dial(b.getMultiaddrs(), { signal: AbortSignal.timeout(10_000) });
    stream = await connection.newStream(PROTOCOL, { signal: AbortSignal.timeout(10_000) });
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it('lists each patch once, with why and when it goes', () => {
    const ids = PATCHES.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of PATCHES) {
      expect(p.why.length).toBeGreaterThan(10);
      expect(p.removeWhen.length).toBeGreaterThan(10);
    }
  });

  it('every patched package is installed at the version its patch was written for, pinned exactly', async () => {
    const { readFile } = await import('node:fs/promises');
    const pkg = JSON.parse(await readFile('package.json', 'utf8')) as {
      dependencies: Record<string, string>;
    };
    for (const p of PATCHES) {
      const installed = JSON.parse(await readFile(`node_modules/${p.pkg}/package.json`, 'utf8')) as {
        version: string;
      };
      expect([p.pkg, installed.version]).toEqual([p.pkg, p.version]);
      expect([p.pkg, pkg.dependencies[p.pkg]]).toEqual([p.pkg, p.version]);
    }
  });

  it('ssdp-package-json-inline: the line the bundle build rewrites is in the installed source', async () => {
    const { readFile } = await import('node:fs/promises');
    const source = await readFile('node_modules/@achingbrain/ssdp/dist/src/ssdp.js', 'utf8');
    expect(source.split(SSDP_READ).length - 1).toBe(1);
  });

  it('the connection, its stream and the transports have every member the patches use', () => {
    expect(connection.status).toBe('open');
    // libp2p-connection-muxer, circuit-relay-hop-handler (send)
    expect(connectionMuxer(connection)).toBeInstanceOf(EventTarget);
    // libp2p-connection-maconn: the transport connection, with the remote address the connection has
    expect(String((connectionMaConn(connection) as { remoteAddr: unknown }).remoteAddr)).toBe(
      connection.remoteAddr.toString(),
    );
    expectShape('circuit-relay-hop-handler', 'connection', connection, { newStream: 'function' });
    countSends(stream, () => undefined);
    // yamux-window-update-half: the stream is a YamuxStream with the fields the rule reads
    expect(stream).toBeInstanceOf(YamuxStream);
    expectShape('yamux-window-update-half', 'a YamuxStream', stream, YAMUX_STREAM_FIELDS);
    // circuit-relay-*: the relay server's hop handler and the relay transport's reservation store
    expect(typeof relayHopHandler(a.services.relay)).toBe('function');
    const relayTransport = a.services.probe.components.transportManager
      .getTransports()
      .find((t) => String(t) === '[object @libp2p/circuit-relay-v2-transport]');
    expect(reservationStore(relayTransport)).toBeDefined();
    // tcp-coalesce-writes: the TCP listener's net.Server
    const tcpListener = a.services.probe.components.transportManager.getListeners().find((l) => {
      try {
        listenerServer(l as never);
        return true;
      } catch {
        return false;
      }
    });
    expect(tcpListener).toBeDefined();
    // peer-store-merge-cache
    expectShape('peer-store-merge-cache', 'peer store', a.peerStore, { merge: 'function' });
    // lp-decoder-no-throw
    expectShape(
      'lp-decoder-no-throw',
      'a LengthPrefixedDecoder',
      new LengthPrefixedDecoder(),
      LP_DECODER_FIELDS,
    );
  });

  it('data crosses the patched transport, muxer and decoder both ways (64 KiB echo)', async () => {
    const payload = new Uint8Array(64 * 1024).map((_, i) => i & 0xff);
    const received: Uint8Array[] = [];
    let bytes = 0;
    const done = new Promise<void>((resolve) => {
      stream.addEventListener('message', (e) => {
        received.push(e.data.subarray());
        bytes += e.data.byteLength;
        if (bytes >= payload.byteLength) resolve();
      });
    });
    stream.send(payload);
    await done;
    expect(Buffer.concat(received)).toEqual(Buffer.from(payload));
  });

  it('a missing target is a PatchTargetMissingError naming the patch', () => {
    expect(() => expectShape('tcp-connect', 'transport', {}, { _connect: 'function' })).toThrow(
      expect.objectContaining({ name: 'PatchTargetMissingError', patch: 'tcp-connect' }),
    );
    expect(() => reservationStore({})).toThrow(PatchTargetMissingError);
  });
});

describe('yamux window updates (go-yamux rule)', () => {
  /** A YamuxStream's state as the stock sendWindowUpdate reads it, with a frame recorder. */
  function streamAt(consumed: number): {
    frames: Array<{ length: number }>;
    s: { sendWindowUpdate(): void };
  } {
    applyYamuxWindowRule();
    const frames: Array<{ length: number }> = [];
    const s = Object.assign(Object.create(YamuxStream.prototype) as { sendWindowUpdate(): void }, {
      state: StreamState.Established,
      streamId: 1,
      recvWindow: 256 * 1024,
      recvWindowCapacity: 256 * 1024 - consumed,
      maxStreamWindowSize: 256 * 1024,
      epochStart: Date.now(),
      getRTT: () => -1,
      sendFrame: (header: { length: number }) => frames.push(header),
    });
    return { frames, s };
  }

  it('sends none while less than half the window is consumed', () => {
    const { frames, s } = streamAt(64 * 1024);
    s.sendWindowUpdate();
    expect(frames).toEqual([]);
  });

  it('sends one for what was consumed once half is', () => {
    const { frames, s } = streamAt(128 * 1024);
    s.sendWindowUpdate();
    expect(frames).toEqual([expect.objectContaining({ length: 128 * 1024 })]);
  });
});

describe('length-prefixed decoder', () => {
  it('decodes frames split anywhere without throwing at the end of a chunk', () => {
    applyDecoderFix();
    const frame = (n: number) => [n >> 8, n & 0xff, ...Array.from({ length: n }, (_, i) => i & 0xff)];
    const bytes = Uint8Array.from([...frame(3), ...frame(300), ...frame(1)]);
    const decoder = new LengthPrefixedDecoder({
      lengthDecoder: (d) => {
        if (d.byteLength < 2) throw new RangeError('short');
        const two = d.subarray(0, 2);
        return ((two[0] ?? 0) << 8) + (two[1] ?? 0);
      },
      encodingLength: () => 2,
    });
    let thrown = 0;
    const original = RangeError;
    const out: number[] = [];
    // A RangeError constructed means a decode loop ended by an exception.
    globalThis.RangeError = class extends original {
      constructor(m?: string) {
        super(m);
        thrown++;
      }
    } as RangeErrorConstructor;
    try {
      for (const cut of [2, 4, 100, bytes.length]) {
        for (const buf of decoder.decode(bytes.subarray(0, cut))) out.push(buf.byteLength);
        for (const buf of decoder.decode(bytes.subarray(cut))) out.push(buf.byteLength);
      }
    } finally {
      globalThis.RangeError = original;
    }
    expect(out).toEqual([3, 300, 1, 3, 300, 1, 3, 300, 1, 3, 300, 1]);
    expect(thrown).toBe(0);
  });
});
