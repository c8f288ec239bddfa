/**
 * Sockets that share a reusePort listener's port: the addon and net.BoundSocket, on 127.0.0.1.
 * Needs the addon built (`npm run build`, or `sh sidecar/nat/reuseport/build.sh`).
 */
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import { addonConnect, loadReusePortAddon, type ReusePortAddon } from '../../sidecar/nat/reuseport/addon.js';

const HOST = '127.0.0.1';
const addon: ReusePortAddon = loadReusePortAddon();
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
type Dialer = (localPort: number, remotePort: number, signal?: AbortSignal) => Promise<net.Socket>;

const dialers: Array<[string, Dialer]> = [
  [
    'addon',
    (localPort, remotePort, signal = AbortSignal.timeout(5000)) =>
      addonConnect(
        addon,
        { localHost: HOST, localPort, remoteHost: HOST, remotePort, ipv6Only: false },
        { signal, timeoutMs: 5000 },
      ),
  ],
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

/**
 * A port whose SYNs are dropped, the way a NAT drops an unsolicited SYN: a listener (bound with
 * SO_REUSEPORT, so other sockets can still bind the port) that never accepts, its accept queue
 * filled. Its fd is returned so a test can bind more sockets to the same port.
 */
async function droppingPort(): Promise<number> {
  const fd = addon.bind(HOST, 0, false);
  cleanups.push(() => addon.close(fd));
  addon.listen(fd, 0);
  const { port } = addon.address(fd);
  for (let i = 0; i < 5; i++) {
    const filler = track(net.connect({ host: HOST, port }));
    const connected = await Promise.race([
      once(filler, 'connect').then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300)),
    ]);
    if (!connected) {
      filler.destroy();
      return port; // the queue is full: this SYN was dropped
    }
  }
  throw new Error('the accept queue never filled');
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

  it.each(dialers)('%s: TCP simultaneous open between two shared ports', async (_name, dial) => {
    // On loopback a SYN is delivered at once: without a drop, A's SYN meets no socket at B and is
    // answered with RST before B can dial. A NAT drops the first SYN; here a full accept queue does.
    const portB = await droppingPort();
    const bindA = addon.bind(HOST, 0, false); // reserve a free port for A, then free it
    const portA = addon.address(bindA).port;
    addon.close(bindA);

    const fromA = dial(portA, portB); // its SYN is dropped at B: A waits in SYN_SENT
    await new Promise((resolve) => setTimeout(resolve, 200));
    const fromB = dial(portB, portA); // B's SYN meets A's SYN_SENT socket: simultaneous open
    const [a, b] = (await Promise.all([fromA, fromB])).map(track) as [net.Socket, net.Socket];

    expect([a.localPort, a.remotePort]).toEqual([portA, portB]);
    expect([b.localPort, b.remotePort]).toEqual([portB, portA]);
    a.write(Buffer.from([42]));
    const [byte] = (await once(b, 'data')) as [Buffer];
    expect([...byte]).toEqual([42]);
    b.write(Buffer.from([7]));
    const [back] = (await once(a, 'data')) as [Buffer];
    expect([...back]).toEqual([7]);
  });
});

describe('the addon', () => {
  it('reports errors the way Node does', async () => {
    const target = await listen();
    target.server.close();
    await once(target.server, 'close');
    const err = await addonConnect(
      addon,
      { localHost: HOST, localPort: 0, remoteHost: HOST, remotePort: target.port, ipv6Only: false },
      { signal: AbortSignal.timeout(5000), timeoutMs: 5000 },
    ).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'ECONNREFUSED', syscall: 'connect' });
  });

  it('times out and aborts a connect whose SYN is dropped', async () => {
    const port = await droppingPort();
    const dial = { localHost: HOST, localPort: 0, remoteHost: HOST, remotePort: port, ipv6Only: false };
    const timedOut = await addonConnect(addon, dial, {
      signal: AbortSignal.timeout(5000),
      timeoutMs: 200,
    }).catch((e: unknown) => e);
    expect(timedOut).toMatchObject({ code: 'ETIMEDOUT' });

    const controller = new AbortController();
    const started = Date.now();
    const pending = addonConnect(addon, dial, { signal: controller.signal, timeoutMs: 5000 }).catch(
      (e: unknown) => e,
    );
    setTimeout(() => controller.abort(), 100);
    expect(await pending).toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it('a missing addon is a ReusePortUnavailableError', () => {
    expect(() => loadReusePortAddon('/nonexistent/reuseport.node')).toThrow(
      expect.objectContaining({ name: 'ReusePortUnavailableError' }),
    );
  });
});
