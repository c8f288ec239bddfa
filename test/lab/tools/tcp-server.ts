/**
 * Lab TCP server: tells each client the address it sees them from, then echoes.
 *
 * Usage: node tcp-server.ts <bind-ip> <port>
 * Prints `listening <ip>:<port>` when ready, and one JSON line per accepted connection. To every
 * client it first writes `<remote ip>:<remote port>\n` (how the NAT mapped it), then echoes
 * whatever the client sends. Exits on SIGTERM.
 */
import { createServer, type Socket } from 'node:net';

const host = process.argv[2] ?? '0.0.0.0';
const port = Number(process.argv[3] ?? '0');

const sockets = new Set<Socket>();
const server = createServer((socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
  socket.on('error', () => socket.destroy());
  const remote = `${socket.remoteAddress}:${socket.remotePort}`;
  process.stdout.write(`${JSON.stringify({ event: 'accepted', remote })}\n`);
  socket.write(`${remote}\n`);
  socket.pipe(socket);
});
server.on('error', (err) => {
  process.stderr.write(`tcp-server: ${err.message}\n`);
  process.exit(1);
});
server.listen({ host, port }, () => {
  const address = server.address();
  const bound =
    typeof address === 'object' && address !== null ? `${address.address}:${address.port}` : String(address);
  process.stdout.write(`listening ${bound}\n`);
});
process.on('SIGTERM', () => {
  for (const socket of sockets) {
    socket.destroy();
  }
  server.close(() => process.exit(0));
});
