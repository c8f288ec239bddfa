/**
 * Test traffic with checkable content: a keyed AES-CTR keystream is random-looking, fast to make
 * and reproducible, so a receiver can compare a hash with what the sender must have sent.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

const CHUNK = 1024 * 1024;

export class Keystream {
  private readonly cipher;
  private readonly zeros = Buffer.alloc(CHUNK);
  constructor(seed: Buffer = randomBytes(16)) {
    this.seed = seed;
    this.cipher = createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
  }
  readonly seed: Buffer;
  next(bytes: number): Buffer {
    return this.cipher.update(bytes === CHUNK ? this.zeros : Buffer.alloc(bytes));
  }
}

/** sha256 of `total` bytes of the keystream of `seed`. */
export function expectedHash(seed: Buffer, total: number): string {
  const ks = new Keystream(seed);
  const h = createHash('sha256');
  for (let left = total; left > 0; left -= CHUNK) h.update(ks.next(Math.min(CHUNK, left)));
  return h.digest('hex');
}

/** Writes `total` keystream bytes to a socket with backpressure; resolves when all are queued. */
export async function writeKeystream(socket: Socket, seed: Buffer, total: number): Promise<void> {
  const ks = new Keystream(seed);
  for (let left = total; left > 0; left -= CHUNK) {
    if (!socket.write(ks.next(Math.min(CHUNK, left)))) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          socket.off('close', onClose);
          resolve();
        };
        const onClose = () => {
          socket.off('drain', onDrain);
          reject(new Error('socket closed while writing'));
        };
        socket.once('drain', onDrain);
        socket.once('close', onClose);
      });
    }
  }
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const a = server.address();
      resolve(typeof a === 'object' && a !== null ? a.port : 0);
    }),
  );
}

export interface TestServer {
  server: Server;
  port: number;
  connections: number;
  close(): Promise<void>;
}

async function serve(handler: (s: Socket) => void): Promise<TestServer> {
  const sockets = new Set<Socket>();
  const ts: TestServer = {
    server: createServer({ allowHalfOpen: true }, (s) => {
      ts.connections++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
      handler(s);
    }),
    port: 0,
    connections: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        ts.server.close(() => resolve());
      }),
  };
  ts.port = await listen(ts.server);
  return ts;
}

/** Hashes everything until the client's FIN, and only then answers with the hash and byte count. */
export function sinkServer(): Promise<TestServer> {
  return serve((s) => {
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      h.update(d);
    });
    s.on('end', () => s.end(`${h.digest('hex')} ${n}\n`));
  });
}

/** Reads "<hex seed> <bytes>\n", then sends that many keystream bytes and ends. */
export function sourceServer(): Promise<TestServer> {
  return serve((s) => {
    let header = '';
    const onData = (d: Buffer) => {
      header += d.toString('latin1');
      const nl = header.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      const [seedHex = '', bytes = '0'] = header.slice(0, nl).split(' ');
      writeKeystream(s, Buffer.from(seedHex, 'hex'), Number(bytes)).then(
        () => s.end(),
        () => s.destroy(),
      );
    };
    s.on('data', onData);
  });
}

export function echoServer(): Promise<TestServer> {
  return serve((s) => s.pipe(s));
}

/** Answers every connection with a fixed line and closes: tells which replica served it. */
export function nameServer(name: string): Promise<TestServer> {
  return serve((s) => s.end(`${name}\n`));
}

export function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Reads a socket to its end; rejects on a reset, so truncation is never mistaken for success. */
export function readAll(s: Socket, onChunk?: (b: Buffer) => void): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => (onChunk === undefined ? parts.push(d) : onChunk(d)));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

/**
 * One request-less exchange: connects, reads the server's whole answer and then closes its own
 * side too. A client that stops at the answer leaves its connection half-open, and a half-open
 * tunnel is a live one: it keeps the exposer's target socket and stream slot until the end.
 */
export async function answerFrom(port: number): Promise<string> {
  const s = await connectTo(port);
  try {
    return (await readAll(s)).toString().trim();
  } finally {
    s.end();
  }
}

/** Upload: `total` keystream bytes to a sink through `port`; returns [sent hash, sink's answer]. */
export async function upload(
  port: number,
  total: number,
): Promise<{ expected: string; answered: string; bytes: number }> {
  const seed = randomBytes(16);
  const s = await connectTo(port);
  const reply = readAll(s);
  await writeKeystream(s, seed, total);
  s.end();
  const [answered = '', bytes = '0'] = (await reply).toString().trim().split(' ');
  return { expected: expectedHash(seed, total), answered, bytes: Number(bytes) };
}

/** Download: asks a source for `total` bytes through `port`; returns both hashes and the count. */
export async function download(
  port: number,
  total: number,
): Promise<{ expected: string; received: string; bytes: number }> {
  const seed = randomBytes(16);
  const s = await connectTo(port);
  const h = createHash('sha256');
  let n = 0;
  const done = readAll(s, (d) => {
    n += d.length;
    h.update(d);
  });
  s.write(`${seed.toString('hex')} ${total}\n`);
  await done.finally(() => s.end());
  return { expected: expectedHash(seed, total), received: h.digest('hex'), bytes: n };
}

/** Echo round trip of `size` random bytes; resolves true when they came back identical. */
export async function echoRoundTrip(port: number, size: number): Promise<boolean> {
  const data = randomBytes(size);
  const s = await connectTo(port);
  const back = readAll(s);
  s.end(data);
  return (await back).equals(data);
}

/** Resident set size of a process in bytes (Linux). */
export async function rssOf(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}
