/**
 * A member (it holds the swarm key) that takes more than its share, run as its own process:
 *   node flood-member.js streams <key env> <peer multiaddr> <protocol> <count> <bytes each> <hold ms>
 *     opens <count> streams (acknowledged protocol) on one connection, sends <bytes each> on each
 *     that was accepted and holds them all for <hold ms>;
 *   node flood-member.js reserve <key env> <relay multiaddr> <count> <source ip> <max ms>
 *     makes <count> relay reservations, each under a new throw-away identity dialling from
 *     <source ip>, holding at most 256 connections at once (older ones close).
 * Prints one JSON line of outcomes. Bounded in count and in time.
 */
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Libp2p, Stream, StreamMessageEvent } from '@libp2p/interface';
import { tcp } from '@libp2p/tcp';
import { multiaddr } from '@multiformats/multiaddr';
import { createLibp2p } from 'libp2p';
import { parseConfig } from '../../sidecar/config/config.js';
import { readSwarmKey } from '../../sidecar/config/swarm-key.js';
import { pnetProtector } from '../../sidecar/crypto/pnet-protector.js';
import { createNode, loadIdentity } from '../../sidecar/node/libp2p-node.js';

const [mode = '', keyEnv = 'K', target = '', ...rest] = process.argv.slice(2);
const psk = await readSwarmKey({ env: keyEnv }, process.env);

function firstByte(stream: Stream, timeoutMs: number): Promise<number | 'reset' | 'timeout'> {
  return new Promise((resolve) => {
    const done = (r: number | 'reset' | 'timeout') => {
      clearTimeout(timer);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('close', onClose);
      resolve(r);
    };
    const onMessage = (evt: StreamMessageEvent) => {
      const d = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
      if (d.byteLength > 0) done(d[0] ?? -1);
    };
    const onClose = () => done('reset');
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onClose);
  });
}

async function streams(): Promise<Record<string, unknown>> {
  const [protocol = '', countS = '0', bytesS = '0', holdS = '0'] = rest;
  const count = Number(countS);
  const bytes = Number(bytesS);
  const config = parseConfig({ swarmKey: { env: keyEnv }, listen: ['/ip4/127.0.0.1/tcp/0'] });
  const node = await createNode({ config, psk, privateKey: await loadIdentity(config) });
  const outcome: Record<string, number> = { accepted: 0, busy: 0, unreachable: 0, reset: 0, error: 0 };
  const held: Stream[] = [];
  const started = Date.now();
  const conn = await node.dial(multiaddr(target), { signal: AbortSignal.timeout(10_000) });
  const chunk = new Uint8Array(64 * 1024).fill(7);
  const one = async () => {
    let stream: Stream;
    try {
      // The plain version too, so the same flood runs against nodes without the acknowledgement.
      stream = await conn.newStream([protocol, protocol.replace(/\/1\.1\.0$/, '/1.0.0')], {
        signal: AbortSignal.timeout(10_000),
        maxOutboundStreams: 100_000,
        runOnLimitedConnection: true,
      });
    } catch {
      outcome.error = (outcome.error ?? 0) + 1;
      return;
    }
    const status = stream.protocol === protocol ? await firstByte(stream, 10_000) : 0;
    if (status !== 0) {
      const key = status === 2 ? 'busy' : status === 1 ? 'unreachable' : 'reset';
      outcome[key] = (outcome[key] ?? 0) + 1;
      stream.abort(new Error('done'));
      return;
    }
    outcome.accepted = (outcome.accepted ?? 0) + 1;
    held.push(stream);
    for (let sent = 0; sent < bytes; sent += chunk.byteLength) {
      if (!stream.send(chunk))
        await stream.onDrain({ signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
      if (stream.status !== 'open') break;
    }
  };
  // 32 at a time, all within 150 s.
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count && Date.now() - started < 150_000) {
        next++;
        await one();
      }
    }),
  );
  const attempts = next;
  process.stdout.write(`${JSON.stringify({ phase: 'opened', attempts, ...outcome })}\n`);
  await new Promise((r) => setTimeout(r, Number(holdS)));
  const stillOpen = held.filter((s) => s.status === 'open').length;
  await node.stop();
  return { phase: 'done', attempts, ...outcome, stillOpen, ms: Date.now() - started };
}

/** A hop RESERVE request (HopMessage{type: RESERVE}), length-prefixed. */
const RESERVE = Uint8Array.of(2, 0x08, 0x00);
const HOP = '/libp2p/circuit/relay/0.2.0/hop';

/** The `status` (field 5) of a length-prefixed HopMessage, or undefined. */
function hopStatus(bytes: Uint8Array): number | undefined {
  let i = 0;
  const varint = () => {
    let v = 0;
    let shift = 0;
    for (;;) {
      const b = bytes[i++] ?? 0;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0 || i >= bytes.length) return v;
      shift += 7;
    }
  };
  const end = varint() + i;
  while (i < end && i < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      const v = varint();
      if (field === 5) return v;
    } else if (wire === 2) {
      const skip = varint(); // read before adding: `i += varint()` would add to the old i
      i += skip;
    } else return undefined;
  }
  return undefined;
}

async function reserve(): Promise<Record<string, unknown>> {
  const [countS = '0', sourceIp = '127.0.0.1', maxMsS = '60000'] = rest;
  const count = Number(countS);
  const maxMs = Number(maxMsS);
  const outcome: Record<string, number> = {};
  const open: Libp2p[] = [];
  const started = Date.now();
  const relay = multiaddr(target);
  // @libp2p/tcp hands dialOpts to net.connect, which binds the source address.
  const dialOpts = { noDelay: true, localAddress: sourceIp };
  const one = async () => {
    const node = await createLibp2p({
      privateKey: await generateKeyPair('Ed25519'),
      transports: [tcp({ dialOpts })],
      connectionProtector: pnetProtector({ psk }),
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionMonitor: { enabled: false },
    });
    open.push(node);
    // Older identities go away (their reservations should go with them); not waited for.
    while (open.length > 256) void open.shift()?.stop();
    let result = 'error';
    try {
      const stream = await node.dialProtocol(relay, HOP, { signal: AbortSignal.timeout(5_000) });
      // The whole length-prefixed answer: it may come in more than one message.
      const answer = new Promise<Uint8Array>((resolve, reject) => {
        let got = new Uint8Array(0);
        stream.addEventListener('message', (evt) => {
          const d = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
          const all = new Uint8Array(got.byteLength + d.byteLength);
          all.set(got);
          all.set(d, got.byteLength);
          got = all;
          const len = got[0] ?? 0;
          if (len < 0x80 && got.byteLength >= len + 1) resolve(got);
          else if (len >= 0x80 && got.byteLength >= 2 + (len & 0x7f) + 128 * (got[1] ?? 0)) resolve(got);
        });
        stream.addEventListener('close', () => reject(new Error('closed')));
        setTimeout(() => reject(new Error('no answer')), 5_000).unref();
      });
      stream.send(RESERVE);
      const status = hopStatus(await answer);
      result =
        status === 100 ? 'ok' : status === 200 ? 'refused' : status === 201 ? 'denied' : `status_${status}`;
    } catch (err) {
      result = `error_${err instanceof Error ? err.name : 'unknown'}`;
    }
    outcome[result] = (outcome[result] ?? 0) + 1;
  };
  let next = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count && Date.now() - started < maxMs) {
        next++;
        await one();
      }
    }),
  );
  await Promise.allSettled(open.map((n) => n.stop()));
  return { attempts: next, ...outcome, ms: Date.now() - started };
}

const result =
  mode === 'streams' ? await streams() : mode === 'reserve' ? await reserve() : { error: 'mode' };
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
