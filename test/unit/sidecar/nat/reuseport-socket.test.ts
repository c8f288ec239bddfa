/**
 * Sockets that share a reusePort listener's port with net.BoundSocket, on 127.0.0.1. (TCP
 * simultaneous open between two such ports is covered by the lab's holepunch test.)
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';

const HOST = '127.0.0.1';
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

async function listen(
  options: net.ListenOptions = {},
): Promise<{ server: net.Server; port: number; seen: net.Socket[] }> {
  const seen: net.Socket[] = [];
  const server = net.createServer((s) => {
    seen.push(s);
    s.on('error', () => {});
  });
  server.listen({ host: HOST, port: 0, ...options });
  await once(server, 'listening');
  cleanups.push(() => {
    for (const s of seen) s.destroy();
    server.close();
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { server, port: address.port, seen };
}

/** A socket connected from HOST:localPort, made either way this project can make one. */
type Dialer = (localPort: number, remotePort: number) => Promise<net.Socket>;

const dialers: Array<[string, Dialer]> = [
  [
    'net.BoundSocket',
    async (localPort, remotePort) => {
      const handle = new net.BoundSocket({ host: HOST, port: localPort, reusePort: true });
      const socket = net.connect({ handle, host: HOST, port: remotePort });
      await once(socket, 'connect');
      return socket;
    },
  ],
];

function track(socket: net.Socket): net.Socket {
  socket.on('error', () => {});
  cleanups.push(() => socket.destroy());
  return socket;
}

describe('a socket from a reusePort listening port', () => {
  it('stock Node cannot: net.connect({ localPort }) of a listening port fails with EADDRINUSE', async () => {
    const holder = await listen({ reusePort: true });
    const target = await listen();
    const socket = track(
      net.connect({ host: HOST, port: target.port, localAddress: HOST, localPort: holder.port }),
    );
    const [err] = (await once(socket, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('EADDRINUSE');
  });

  it.each(dialers)('%s: the server sees the listening port as the source port', async (_name, dial) => {
    const holder = await listen({ reusePort: true });
    const target = await listen();
    const accepted = once(target.server, 'connection');
    const socket = track(await dial(holder.port, target.port));
    const [inbound] = (await accepted) as [net.Socket];
    expect(socket.localPort).toBe(holder.port);
    expect(inbound.remotePort).toBe(holder.port);
    // and bytes cross both ways
    inbound.write('ping');
    const [data] = (await once(socket, 'data')) as [Buffer];
    expect(data.toString()).toBe('ping');
    socket.write('pong');
    const [back] = (await once(inbound, 'data')) as [Buffer];
    expect(back.toString()).toBe('pong');
    // the listener still accepts on its port
    const other = track(net.connect({ host: HOST, port: holder.port }));
    await once(other, 'connect');
    expect(holder.seen.length).toBeGreaterThanOrEqual(1);
  });
});
