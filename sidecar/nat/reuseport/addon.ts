/**
 * The reuse-port Node-API addon (reuseport.c): loading it, and a connect from a shared port that
 * yields a `net.Socket`. Used when Node has no `net.BoundSocket` (before v24.19).
 */
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AbortError } from '@libp2p/interface';
import { ReusePortUnavailableError } from '../errors.js';

/** A local address as getsockname(2) reports it. */
export interface BoundAddress {
  address: string;
  port: number;
  family: 'IPv4' | 'IPv6';
}

/** What reuseport.node exports. Hosts are numeric IPs; errors carry Node-style `code`/`errno`/`syscall`. */
export interface ReusePortAddon {
  /** A non-blocking TCP socket with SO_REUSEADDR and SO_REUSEPORT, bound to host:port. Returns its fd. */
  bind(host: string, port: number, ipv6Only: boolean): number;
  /** listen(2) on a bound fd. Nothing accepts: a test uses it to make a port drop SYNs. */
  listen(fd: number, backlog: number): void;
  /** connect(2) in a thread-pool worker, waiting at most `timeoutMs`. The fd stays the caller's. */
  connect(fd: number, host: string, port: number, timeoutMs: number): Promise<void>;
  /** Ends a pending connect (it then fails with ECONNRESET). */
  shutdown(fd: number): void;
  /** Closes an fd that no `net.Socket` owns. */
  close(fd: number): void;
  address(fd: number): BoundAddress;
}

const ADDON_FUNCTIONS = ['bind', 'listen', 'connect', 'shutdown', 'close', 'address'] as const;

function isAddon(value: unknown): value is ReusePortAddon {
  return (
    typeof value === 'object' &&
    value !== null &&
    ADDON_FUNCTIONS.every((name) => typeof Reflect.get(value, name) === 'function')
  );
}

/**
 * Where `build.sh` writes the addon: beside this module once compiled into dist/, and under dist/
 * when the TypeScript sources run directly (jest).
 */
export function defaultAddonPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  if (here.split(path.sep).includes('dist')) {
    return path.join(here, 'reuseport.node');
  }
  return path.resolve(here, '../../../dist/sidecar/nat/reuseport/reuseport.node');
}

/** Loads the addon; throws `ReusePortUnavailableError` when it is missing or not loadable. */
export function loadReusePortAddon(file: string = defaultAddonPath()): ReusePortAddon {
  // process.dlopen rather than require: it works the same from ESM, CommonJS and jest's runtime.
  const mod: { exports: unknown } = { exports: {} };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new ReusePortUnavailableError(`addon ${file} did not load: ${detail}`, { cause: err });
  }
  if (!isAddon(mod.exports)) {
    throw new ReusePortUnavailableError(`${file} is not the reuseport addon`);
  }
  return mod.exports;
}

/** Where an addon dial comes from and goes to. Hosts are numeric IPs. */
export interface AddonDial {
  localHost: string;
  localPort: number;
  remoteHost: string;
  remotePort: number;
  /** Mirror of the listener: an IPv6 listener of @libp2p/tcp is IPv6-only. */
  ipv6Only: boolean;
}

export interface AddonDialOptions {
  signal: AbortSignal;
  /** Hard bound of the connect in the worker thread, ms. */
  timeoutMs: number;
  noDelay?: boolean;
  keepAlive?: boolean;
  keepAliveInitialDelay?: number;
  allowHalfOpen?: boolean;
}

/**
 * Connects from localHost:localPort (shared with a reusePort listener) and returns the connected
 * socket. On abort the pending connect is shut down, and the fd is closed only once the worker has
 * let go of it, so a reused fd number can never be touched.
 */
export async function addonConnect(
  addon: ReusePortAddon,
  dial: AddonDial,
  options: AddonDialOptions,
): Promise<net.Socket> {
  options.signal.throwIfAborted();
  const fd = addon.bind(dial.localHost, dial.localPort, dial.ipv6Only);
  const onAbort = (): void => addon.shutdown(fd);
  options.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await addon.connect(fd, dial.remoteHost, dial.remotePort, options.timeoutMs);
  } catch (err) {
    addon.close(fd);
    throw options.signal.aborted ? new AbortError() : err;
  } finally {
    options.signal.removeEventListener('abort', onAbort);
  }
  if (options.signal.aborted) {
    addon.close(fd);
    throw new AbortError();
  }
  let socket: net.Socket;
  try {
    socket = new net.Socket({
      fd,
      readable: true,
      writable: true,
      allowHalfOpen: options.allowHalfOpen ?? false,
    });
  } catch (err) {
    addon.close(fd);
    throw err;
  }
  // A socket wrapped around an fd never runs Node's connect step, which is where these apply.
  socket.setNoDelay(options.noDelay ?? true);
  socket.setKeepAlive(options.keepAlive ?? true, options.keepAliveInitialDelay ?? 0);
  return socket;
}
