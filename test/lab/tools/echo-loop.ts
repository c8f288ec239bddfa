/**
 * Lab echo client on request, run inside a namespace (Node strips the types; no local imports):
 * the test process cannot open a socket inside a lab namespace, so it asks this one to, one new
 * connection per request.
 *
 *   node echo-loop.ts <port> [timeoutMs]
 *
 * Prints `ready`, then for each stdin line `<id> <bytes>` connects to 127.0.0.1:<port> (a
 * forward's local listener), sends that many random bytes, half-closes, reads to the end and
 * prints one JSON line `{ id, ok, bytes, ms, error }` (ok: the same bytes came back). Requests are
 * served one at a time, each bounded by timeoutMs (15 s). Exits when stdin ends.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

const port = Number(process.argv[2] ?? '0');
const timeoutMs = Number(process.argv[3] ?? '15000');

function echoOnce(size: number): Promise<{ ok: boolean; bytes: number; error: string | null }> {
  return new Promise((resolve) => {
    const data = randomBytes(size);
    const parts: Buffer[] = [];
    let settled = false;
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true, noDelay: true });
    const finish = (error: string | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      const got = Buffer.concat(parts);
      resolve({ ok: error === null && got.equals(data), bytes: got.length, error });
    };
    const timer = setTimeout(() => finish(`no echo within ${timeoutMs} ms`), timeoutMs);
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => finish(Buffer.concat(parts).equals(data) ? null : 'echo differs'));
    s.once('error', (err: NodeJS.ErrnoException) => finish(`${err.code ?? err.name}: ${err.message}`));
    s.once('connect', () => s.end(data));
  });
}

const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
for await (const line of lines) {
  const [id = '', bytes = '0'] = line.trim().split(' ');
  if (id === '') continue;
  const started = performance.now();
  const r = await echoOnce(Number(bytes));
  process.stdout.write(`${JSON.stringify({ id, ...r, ms: performance.now() - started })}\n`);
}
