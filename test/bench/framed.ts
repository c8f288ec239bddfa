/**
 * Bench traffic that never relies on half-close: the client says up front how much it sends, and
 * the server answers once it has that much, while both directions are still open.
 *
 * Why: kubo's `ipfs p2p` closes both directions of a forwarded connection as soon as either side
 * reaches EOF (kubo p2p/stream.go: whichever io.Copy ends first closes the local socket and the
 * stream), so "send, FIN, then read the answer" loses the answer through kubo. Every column runs
 * this same client and server, so the columns stay comparable with one another.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { connectTo, type TestServer, writeKeystream } from '../helpers/traffic.js';

/** Longest header accepted: a decimal byte count and a newline. */
const MAX_HEADER = 32;

/**
 * Reads "<bytes>\n", hashes exactly that many following bytes, then answers "<sha256 hex> <bytes>\n".
 * Bytes past the announced count are a protocol error (the connection is destroyed).
 */
export async function framedSinkServer(): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const ts: TestServer = {
    server: createServer((s) => {
      ts.connections++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      let pending = Buffer.alloc(0);
      let want = -1;
      let got = 0;
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => {
        let body = d;
        if (want < 0) {
          const buf = Buffer.concat([pending, d]);
          const nl = buf.indexOf(0x0a);
          if (nl < 0) {
            if (buf.length > MAX_HEADER) s.destroy();
            else pending = buf;
            return;
          }
          want = Number(buf.subarray(0, nl).toString('latin1'));
          if (!Number.isSafeInteger(want) || want < 0) return void s.destroy();
          body = buf.subarray(nl + 1);
        }
        got += body.length;
        if (got > want) return void s.destroy();
        h.update(body);
        if (got === want) s.write(`${h.digest('hex')} ${got}\n`);
      });
    }),
    port: 0,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        ts.server.close(() => resolve());
      }),
  };
  await new Promise<void>((resolve) => ts.server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const a = ts.server.address();
  ts.port = typeof a === 'object' && a !== null ? a.port : 0;
  return ts;
}

/** Reads one "\n"-terminated line from `s`; rejects if the connection ends or fails first. */
function readLine(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      const nl = text.indexOf('\n');
      if (nl >= 0) {
        cleanup();
        resolve(text.slice(0, nl));
      }
    };
    const onEnd = () => {
      cleanup();
      reject(new Error(`connection ended before the sink answered (got "${text}")`));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const cleanup = () => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', onError);
    };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', onError);
  });
}

export interface FramedUploadResult {
  /** The keystream seed sent: `expectedHash(seed, bytes sent)` is what the sink should answer. */
  seed: Buffer;
  /** The sink's sha256 (hex) and byte count. */
  answered: string;
  bytes: number;
}

/**
 * Uploads `total` keystream bytes to a framed sink through `port` and reads its answer while the
 * connection is still open both ways. The expected hash is left to the caller, so that a timed
 * caller can compute it after its clock stops (for 1 GiB it takes seconds).
 */
export async function framedUpload(port: number, total: number): Promise<FramedUploadResult> {
  const seed = randomBytes(16);
  const s = await connectTo(port);
  try {
    const reply = readLine(s);
    // If the upload fails, the reply's rejection is the one to report; never leave it unhandled.
    reply.catch(() => undefined);
    s.write(`${total}\n`);
    await writeKeystream(s, seed, total);
    const [answered = '', bytes = '0'] = (await reply).trim().split(' ');
    return { seed, answered, bytes: Number(bytes) };
  } finally {
    s.destroy();
  }
}
