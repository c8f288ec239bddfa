/**
 * Lab traffic with checkable content, run inside a namespace (Node strips the types; no local
 * imports). A keyed AES-CTR keystream is random-looking and reproducible, so each side can compare
 * a sha256 with what the other must have sent; truncation or corruption never passes.
 *
 *   node traffic.ts serve <port> <sink|source|echo>   prints `listening <port>`, serves until SIGTERM
 *   node traffic.ts upload <port> <bytes>             keystream to a sink; one JSON line
 *   node traffic.ts download <port> <bytes>           keystream from a source; one JSON line
 *   node traffic.ts echo <port> <bytes>               one echo round trip; one JSON line
 *   node traffic.ts hold <port> <ms> <intervalMs>     echo 1 KiB every interval for ms; one JSON line
 *
 * Every client connects to 127.0.0.1:<port> (a forward's local listener) and exits 0 when its
 * check passed, 1 otherwise.
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';

const CHUNK = 1024 * 1024;
const [mode = '', portArg = '0', a3 = '0', a4 = '0'] = process.argv.slice(2);
const port = Number(portArg);

function keystream(seed: Buffer): (n: number) => Buffer {
  const cipher = createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  return (n) => cipher.update(n === CHUNK ? zeros : Buffer.alloc(n));
}

function expectedHash(seed: Buffer, total: number): string {
  const next = keystream(seed);
  const h = createHash('sha256');
  for (let left = total; left > 0; left -= CHUNK) h.update(next(Math.min(CHUNK, left)));
  return h.digest('hex');
}

async function writeKeystream(s: Socket, seed: Buffer, total: number): Promise<void> {
  const next = keystream(seed);
  for (let left = total; left > 0; left -= CHUNK) {
    if (!s.write(next(Math.min(CHUNK, left)))) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          s.off('close', onClose);
          resolve();
        };
        const onClose = () => {
          s.off('drain', onDrain);
          reject(new Error('socket closed while writing'));
        };
        s.once('drain', onDrain);
        s.once('close', onClose);
      });
    }
  }
}

function out(result: Record<string, unknown>, ok: boolean): never {
  process.stdout.write(`${JSON.stringify({ ok, ...result })}\n`);
  process.exit(ok ? 0 : 1);
}

function dial(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

function serve(kind: string): void {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    if (kind === 'echo') {
      s.pipe(s);
    } else if (kind === 'sink') {
      const h = createHash('sha256');
      let n = 0;
      s.on('data', (d: Buffer) => {
        n += d.length;
        h.update(d);
      });
      s.on('end', () => s.end(`${h.digest('hex')} ${n}\n`));
    } else {
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
    }
  });
  server.listen({ host: '127.0.0.1', port }, () => process.stdout.write(`listening ${port}\n`));
  process.on('SIGTERM', () => {
    for (const s of sockets) s.destroy();
    server.close(() => process.exit(0));
  });
}

async function upload(total: number): Promise<void> {
  const seed = randomBytes(16);
  const started = performance.now();
  const s = await dial();
  const chunks: Buffer[] = [];
  const reply = new Promise<string>((resolve, reject) => {
    s.on('data', (d: Buffer) => chunks.push(d));
    s.once('end', () => resolve(Buffer.concat(chunks).toString()));
    s.once('error', reject);
  });
  await writeKeystream(s, seed, total);
  s.end();
  const [answered = '', bytes = '0'] = (await reply).trim().split(' ');
  const ms = performance.now() - started;
  const expected = expectedHash(seed, total);
  out({ expected, answered, bytes: Number(bytes), ms }, answered === expected && Number(bytes) === total);
}

async function download(total: number): Promise<void> {
  const seed = randomBytes(16);
  const started = performance.now();
  const s = await dial();
  const h = createHash('sha256');
  let n = 0;
  let ttfbMs: number | null = null;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      ttfbMs ??= performance.now() - started;
      n += d.length;
      h.update(d);
    });
    s.once('end', () => resolve());
    s.once('error', reject);
  });
  s.write(`${seed.toString('hex')} ${total}\n`);
  await done;
  s.end();
  const ms = performance.now() - started;
  const received = h.digest('hex');
  const expected = expectedHash(seed, total);
  out({ expected, received, bytes: n, ms, ttfbMs }, received === expected && n === total);
}

async function echo(size: number): Promise<void> {
  const data = randomBytes(size);
  const started = performance.now();
  const s = await dial();
  const parts: Buffer[] = [];
  let ttfbMs: number | null = null;
  const back = new Promise<Buffer>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      ttfbMs ??= performance.now() - started;
      parts.push(d);
    });
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
  s.end(data);
  const got = await back;
  out({ bytes: got.length, ms: performance.now() - started, ttfbMs }, got.equals(data));
}

/** Keeps one connection busy: a round trip every interval; any loss, reset or stall fails. */
async function hold(durationMs: number, intervalMs: number): Promise<void> {
  const s = await dial();
  let rounds = 0;
  let pending: { data: Buffer; got: Buffer[]; size: number } | undefined;
  let error: string | null = null;
  s.on('error', (err) => {
    error = err.message;
  });
  s.on('end', () => {
    error ??= 'ended early';
  });
  s.on('data', (d: Buffer) => {
    if (pending === undefined) return;
    pending.got.push(d);
    pending.size += d.length;
  });
  const deadline = performance.now() + durationMs;
  while (performance.now() < deadline && error === null) {
    pending = { data: randomBytes(1024), got: [], size: 0 };
    s.write(pending.data);
    const sent = performance.now();
    while (pending.size < 1024 && error === null && performance.now() - sent < 5_000)
      await new Promise((r) => setTimeout(r, 5));
    if (!Buffer.concat(pending.got).equals(pending.data)) {
      error ??= `round ${rounds} came back wrong or not at all`;
      break;
    }
    rounds++;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  s.end();
  out({ rounds, error }, error === null && rounds > 0);
}

const run: Record<string, () => Promise<void> | void> = {
  serve: () => serve(a3 === '0' ? 'echo' : a3),
  upload: () => upload(Number(a3)),
  download: () => download(Number(a3)),
  echo: () => echo(Number(a3)),
  hold: () => hold(Number(a3), Number(a4)),
};
const fn = run[mode];
if (fn === undefined) {
  process.stderr.write('usage: traffic.ts serve|upload|download|echo|hold <port> ...\n');
  process.exit(2);
}
Promise.resolve(fn()).catch((err: unknown) =>
  out(
    {
      error:
        err instanceof Error
          ? `${(err as NodeJS.ErrnoException).code ?? err.name}: ${err.message}`
          : String(err),
    },
    false,
  ),
);
