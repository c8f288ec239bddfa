/**
 * The bench's measures, each against one local port (raw server, socat relay, kubo forward or
 * tunnel forward), so every column runs exactly the same client code. Every loop is bounded in
 * count and time. No measure relies on half-close (send, FIN, read the answer): kubo's `ipfs p2p`
 * does not carry it (see ./framed.ts).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { connectTo, expectedHash } from '../helpers/traffic.js';
import { framedUpload } from './framed.js';

const MiB = 1024 * 1024;

/** Rejects after `ms` with a message naming the measure: a stuck bench must fail, not hang. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class HashMismatchError extends Error {
  override readonly name = 'HashMismatchError';
}

/**
 * Uploads `streams` × `bytesEach` to a framed hashing sink (./framed.ts) at once; MiB/s over all of
 * them, from the first connect to the last sink's answer. Hashes are checked after the clock stops.
 */
export async function throughput(
  port: number,
  streams: number,
  bytesEach: number,
  timeLimitMs: number,
  what: string,
): Promise<number> {
  const started = performance.now();
  const results = await deadline(
    Promise.all(
      Array.from({ length: streams }, (_, i) =>
        framedUpload(port, bytesEach).catch((err: unknown) => {
          throw new Error(`${what}, stream ${i + 1} of ${streams}: ${String(err)}`, { cause: err });
        }),
      ),
    ),
    timeLimitMs,
    what,
  );
  const seconds = (performance.now() - started) / 1000;
  for (const r of results) {
    const expected = expectedHash(r.seed, bytesEach);
    if (r.bytes !== bytesEach || r.answered !== expected)
      throw new HashMismatchError(
        `${what}: the sink got ${r.bytes} of ${bytesEach} bytes with sha256 ${r.answered}, expected ${expected}`,
      );
  }
  return (streams * bytesEach) / MiB / seconds;
}

/** Reads from `socket` until `size` more bytes arrived; resolves them. */
function readExactly(socket: Socket, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= size) {
        cleanup();
        resolve(Buffer.concat(parts, n));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`connection ended after ${n} of ${size} bytes`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('error', onError);
  });
}

export interface LatencyResult {
  p50Us: number;
  p99Us: number;
  rounds: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/**
 * Ping-pong of `size` bytes on one long-lived connection to an echo server: `warmup` rounds not
 * counted, then up to `rounds` timed ones (fewer only if `timeLimitMs` runs out).
 */
export async function latency(
  port: number,
  size: number,
  warmup: number,
  rounds: number,
  timeLimitMs: number,
): Promise<LatencyResult> {
  const socket = await connectTo(port);
  socket.setNoDelay(true);
  const payload = randomBytes(size);
  const samples: number[] = [];
  const stopAt = performance.now() + timeLimitMs;
  try {
    for (let i = 0; i < warmup + rounds && performance.now() < stopAt; i++) {
      const t0 = performance.now();
      const back = readExactly(socket, size);
      socket.write(payload);
      const got = await deadline(back, 10_000, 'latency round');
      const us = (performance.now() - t0) * 1000;
      if (!got.equals(payload)) throw new Error('latency: the echo came back different');
      if (i >= warmup) samples.push(us);
    }
  } finally {
    socket.destroy();
  }
  if (samples.length < Math.min(rounds, 50))
    throw new Error(`latency: only ${samples.length} rounds in time`);
  samples.sort((a, b) => a - b);
  return { p50Us: percentile(samples, 50), p99Us: percentile(samples, 99), rounds: samples.length };
}

/** One short connection: connect, send the payload, read its echo, close. */
async function oneShot(port: number, payload: Buffer): Promise<void> {
  const s = await connectTo(port);
  try {
    const back = readExactly(s, payload.length);
    s.write(payload);
    const got = await back;
    if (!got.equals(payload)) throw new Error(`short connection: echo of ${got.length} bytes differs`);
  } finally {
    s.destroy();
  }
}

export interface ConnRateResult {
  perSecond: number;
  completed: number;
}

/** New connections per second: `count` short connections, `concurrency` at a time, within `timeLimitMs`. */
export async function connectionRate(
  port: number,
  count: number,
  concurrency: number,
  timeLimitMs: number,
): Promise<ConnRateResult> {
  const payload = randomBytes(64);
  let started = 0;
  let completed = 0;
  const t0 = performance.now();
  const stopAt = t0 + timeLimitMs;
  const worker = async () => {
    while (started < count && performance.now() < stopAt) {
      started++;
      await deadline(oneShot(port, payload), 10_000, 'short connection');
      completed++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  return { perSecond: completed / seconds, completed };
}

/** Milliseconds from starting a connect to the first byte of the echo of a 64-byte request. */
export async function timeToFirstByte(port: number): Promise<number> {
  const t0 = performance.now();
  const s = await connectTo(port);
  try {
    const first = new Promise<void>((resolve, reject) => {
      s.once('data', () => resolve());
      s.once('error', reject);
      s.once('end', () => reject(new Error('connection ended before the first byte')));
    });
    s.write(randomBytes(64));
    await deadline(first, 20_000, 'time to first byte');
    return performance.now() - t0;
  } finally {
    s.destroy();
  }
}

/**
 * From `since` (a process spawn) to the first echoed byte through `port`: connects again every
 * 2 ms while the port refuses (the process is still starting), then sends and waits. A connection
 * the forward accepts but ends (no provider yet) is retried too. Bounded by `limitMs` from `since`.
 */
export async function firstByteSince(since: number, port: number, limitMs: number): Promise<number> {
  for (;;) {
    if (performance.now() - since > limitMs)
      throw new Error(`no first byte through port ${port} within ${limitMs / 1000} s of the spawn`);
    const s = await connectTo(port).catch(() => undefined);
    if (s === undefined) {
      await new Promise((r) => setTimeout(r, 2));
      continue;
    }
    try {
      const first = new Promise<boolean>((resolve) => {
        s.once('data', () => resolve(true));
        s.once('error', () => resolve(false));
        s.once('end', () => resolve(false));
      });
      s.write(randomBytes(64));
      const left = limitMs - (performance.now() - since);
      if (await deadline(first, Math.max(left, 1), 'first byte since spawn'))
        return performance.now() - since;
    } finally {
      s.destroy();
    }
  }
}

/** Median time to first byte over `tries` sequential fresh connections. */
export async function warmTimeToFirstByte(port: number, tries: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < tries; i++) samples.push(await timeToFirstByte(port));
  samples.sort((a, b) => a - b);
  return percentile(samples, 50);
}

/**
 * Opens `count` idle connections through `port` (each proven end to end by one echo round trip,
 * so the far side's connection exists too) and keeps them open until `close()`.
 */
export async function holdConnections(
  port: number,
  count: number,
  concurrency: number,
  timeLimitMs: number,
): Promise<{ close(): Promise<void> }> {
  const sockets: Socket[] = [];
  const payload = randomBytes(16);
  let opened = 0;
  const stopAt = performance.now() + timeLimitMs;
  const worker = async () => {
    while (opened < count) {
      if (performance.now() > stopAt)
        throw new Error(`held connections: only ${sockets.length} of ${count} opened in time`);
      opened++;
      const s = await connectTo(port);
      sockets.push(s);
      s.on('error', () => undefined);
      const back = readExactly(s, payload.length);
      s.write(payload);
      const got = await deadline(back, 10_000, 'held connection');
      if (!got.equals(payload)) throw new Error('held connection: echo differs');
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } catch (err) {
    for (const s of sockets) s.destroy();
    throw err;
  }
  return {
    close: async () => {
      const closed = sockets.map((s) => new Promise((r) => (s.destroyed ? r(null) : s.once('close', r))));
      for (const s of sockets) s.destroy();
      await Promise.all(closed);
    },
  };
}
