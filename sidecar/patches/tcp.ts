/**
 * The @libp2p/tcp patches: its private `_connect` (the socket step inside `dial()`) replaced once
 * per transport, running the layers this project adds around it (reuse-port source binding,
 * connect timeouts), and one socket write per group of writes made in one tick (outbound sockets
 * from `_connect`, inbound ones from the listener's private `server`).
 */
import type net from 'node:net';
import type { Listener, Transport } from '@libp2p/interface';
import type { TCPDialOptions } from '@libp2p/tcp';
import type { Multiaddr } from '@multiformats/multiaddr';
import { expectShape, PatchTargetMissingError } from './patch.js';

export type TcpConnect = (ma: Multiaddr, options: TCPDialOptions) => Promise<net.Socket>;
/** One step around the socket connect: gets the next (inner) connect, returns its own. */
export type TcpConnectLayer = (next: TcpConnect) => TcpConnect;

export const TCP_CONNECT_PATCH = 'tcp-connect';
export const TCP_WRITES_PATCH = 'tcp-coalesce-writes';

interface Chain {
  stock: TcpConnect;
  layers: TcpConnectLayer[];
  composed: TcpConnect;
  coalesce: boolean;
}

const chains = new WeakMap<object, Chain>();

function chainOf(transport: Transport): Chain {
  let chain = chains.get(transport);
  if (chain !== undefined) return chain;
  const { _connect: stockFn } = expectShape(TCP_CONNECT_PATCH, '@libp2p/tcp transport', transport, {
    _connect: 'function',
  });
  const stock: TcpConnect = (ma, options) =>
    Reflect.apply(stockFn as TcpConnect, transport, [ma, options]) as Promise<net.Socket>;
  const created: Chain = { stock, layers: [], composed: stock, coalesce: false };
  chain = created;
  chains.set(transport, created);
  // The one replacement of `_connect`: whatever layers are added later run through it.
  Reflect.set(transport, '_connect', async (ma: Multiaddr, options: TCPDialOptions): Promise<net.Socket> => {
    const socket = await created.composed(ma, options);
    if (created.coalesce) coalesceWrites(socket);
    return socket;
  });
  return created;
}

/**
 * Adds `layer` around the transport's socket connect; layers added later run outside earlier ones
 * (the first added is next to the socket).
 */
export function addTcpConnectLayer(transport: Transport, layer: TcpConnectLayer): void {
  const chain = chainOf(transport);
  chain.layers.push(layer);
  chain.composed = chain.layers.reduce<TcpConnect>((next, l) => l(next), chain.stock);
}

const COALESCED = Symbol('peertunnel.coalescedWrites');

/**
 * Writes made to `socket` in one tick go out as one writev: the first write of a tick corks the
 * socket, and uncorks it once the current job and its promise jobs are done. A yamux frame of a
 * 64 KiB read becomes two noise messages (each a length and a body), and a read carries frames of
 * several streams plus their window updates: without this each part is its own write syscall.
 */
export function coalesceWrites(socket: net.Socket): void {
  if (Reflect.get(socket, COALESCED) === true) return;
  Reflect.set(socket, COALESCED, true);
  const write = socket.write;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>): boolean {
    if (!corked && !socket.destroyed) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return Reflect.apply(write, this, args) as boolean;
  } as net.Socket['write'];
}

/** The net.Server of a @libp2p/tcp listener (a private field). */
export function listenerServer(listener: Listener): net.Server {
  const { server } = expectShape(TCP_WRITES_PATCH, '@libp2p/tcp listener', listener, { server: 'object' });
  const s = server as net.Server;
  if (typeof s.on !== 'function')
    throw new PatchTargetMissingError(TCP_WRITES_PATCH, 'listener.server is not a net.Server');
  return s;
}

/**
 * Every socket of `transport` (dialled or accepted) coalesces its writes. Checked now: a transport
 * whose listener or `_connect` changed shape fails here, at start.
 */
export function coalesceTcpWrites(transport: Transport): void {
  chainOf(transport).coalesce = true;
  const createListener = expectShape(TCP_WRITES_PATCH, '@libp2p/tcp transport', transport, {
    createListener: 'function',
  }).createListener as Transport['createListener'];
  transport.createListener = (options) => {
    const listener = Reflect.apply(createListener, transport, [options]) as Listener;
    // Runs after the listener's own 'connection' handler, before anything is written.
    listenerServer(listener).on('connection', coalesceWrites);
    return listener;
  };
}
