/**
 * Lab hash client: sends random bytes to an echo server (tools/tcp-server.ts, directly or through a
 * tunnel), half-closes, reads the echo back and compares hashes.
 *
 * Usage: node hash-client.ts <host> <port> <bytes> [--timeout MS]
 * tcp-server.ts first writes one line (how it saw the client); that line is skipped.
 * Prints one JSON line: {"ok", "sent", "received", "sentSha256", "receivedSha256", "seen", "ms"}
 * and exits 0 when the echo matches, 1 otherwise.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';

const [host = '127.0.0.1', portText = '0', bytesText = '0', flag, timeoutText] = process.argv.slice(2);
const total = Number(bytesText);
const timeoutMs = flag === '--timeout' ? Number(timeoutText) : 60_000;
const CHUNK = 256 * 1024;

const started = Date.now();
const sentHash = createHash('sha256');
const receivedHash = createHash('sha256');
let received = 0;
let header = '';
let headerDone = false;

function finish(ok: boolean, error?: string): never {
  const result = {
    ok,
    sent: total,
    received,
    sentSha256: sentHash.digest('hex'),
    receivedSha256: receivedHash.digest('hex'),
    seen: header.trim(),
    ms: Date.now() - started,
    ...(error === undefined ? {} : { error }),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(ok ? 0 : 1);
}

const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
const socket = connect({ host, port: Number(portText) });
socket.on('error', (err) => finish(false, err.message));
socket.on('data', (data: Buffer) => {
  let rest = data;
  if (!headerDone) {
    const nl = rest.indexOf(10);
    if (nl === -1) {
      header += rest.toString();
      return;
    }
    header += rest.subarray(0, nl).toString();
    headerDone = true;
    rest = rest.subarray(nl + 1);
  }
  received += rest.length;
  receivedHash.update(rest);
});
socket.on('end', () => {
  clearTimeout(timer);
  const sent = sentHash.copy().digest('hex');
  const got = receivedHash.copy().digest('hex');
  finish(received === total && sent === got);
});
socket.on('connect', async () => {
  for (let left = total; left > 0; left -= CHUNK) {
    const chunk = randomBytes(Math.min(CHUNK, left));
    sentHash.update(chunk);
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  socket.end();
});
