/**
 * Lab TCP probe: connects to each target in turn, keeping earlier connections open (so a NAT must
 * hold every mapping at once), learns how the server saw it, and checks an echo.
 *
 * Usage: node tcp-client.ts [--local-port N] [--timeout MS] <ip:port>...
 * Prints one JSON line per target:
 *   {"target":"203.0.113.10:7000","ok":true,"local":"198.18.1.10:40000","observed":"198.51.100.10:40000"}
 *   {"target":"...","ok":false,"error":"ETIMEDOUT"}
 * then closes everything and exits 0 (a failed connection is a result, not a crash).
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';

interface Result {
  target: string;
  ok: boolean;
  local?: string;
  observed?: string;
  error?: string;
}

const args = process.argv.slice(2);
let localPort: number | undefined;
let timeoutMs = 3_000;
const targets: string[] = [];
for (let i = 0; i < args.length; i++) {
  const arg = args[i] ?? '';
  if (arg === '--local-port') {
    localPort = Number(args[++i]);
  } else if (arg === '--timeout') {
    timeoutMs = Number(args[++i]);
  } else {
    targets.push(arg);
  }
}

function probe(target: string): Promise<{ result: Result; socket: Socket | undefined }> {
  const [host = '', portText = ''] = target.split(':');
  return new Promise((resolve) => {
    const token = randomBytes(8).toString('hex');
    let buffer = '';
    let observed: string | undefined;
    // Node's client sockets set SO_REUSEADDR, so several probes may share --local-port.
    const socket = connect({ host, port: Number(portText), localPort });
    const fail = (error: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ result: { target, ok: false, error }, socket: undefined });
    };
    const timer = setTimeout(() => fail('ETIMEDOUT'), timeoutMs);
    socket.setEncoding('utf8');
    socket.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split('\n');
      if (observed === undefined && lines.length > 1) {
        observed = lines[0];
        socket.write(`${token}\n`);
      }
      if (observed !== undefined && lines.includes(token)) {
        clearTimeout(timer);
        resolve({
          result: { target, ok: true, local: `${socket.localAddress}:${socket.localPort}`, observed },
          socket,
        });
      }
    });
  });
}

const open: Socket[] = [];
for (const target of targets) {
  const { result, socket } = await probe(target);
  if (socket) {
    open.push(socket);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
for (const socket of open) {
  socket.destroy();
}
process.exit(0);
