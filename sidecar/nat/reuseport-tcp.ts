/**
 * `reusePortTcp()`: @libp2p/tcp whose outgoing connections come from the listening port.
 *
 * Stock @libp2p/tcp dials from ephemeral ports, so the address a peer observes (identify) and the
 * NAT mapping a dial opens are useless for hole punching, and TCP simultaneous open never lines up
 * (js-libp2p issue 2620). Here listeners use SO_REUSEPORT, and a dial binds the listener's ip:port
 * first with `net.BoundSocket` (Node >= 24.19) through the stock dial path; a Node without it
 * dials from ephemeral ports and says so once. Everything else is @libp2p/tcp unchanged: filters,
 * listeners, socket wrapping, upgrade, metrics. The dial step is a layer of the one `_connect`
 * patch (sidecar/patches/tcp.ts).
 */
import net from 'node:net';
import type { Listener, Transport } from '@libp2p/interface';
import {
  type TCPComponents,
  type TCPDialOptions,
  type TCPOptions,
  type TCPSocketOptions,
  tcp,
} from '@libp2p/tcp';
import type { Multiaddr } from '@multiformats/multiaddr';
import { addTcpConnectLayer, coalesceTcpWrites, type TcpConnect } from '../patches/tcp.js';
import { LOCAL_ENDPOINT_ERRORS } from './constants.js';
import { ReusePortUnavailableError } from './errors.js';

/** How a dial gets the listening port as its source port. */
export type ReusePortMethod = 'bound-socket' | 'off';

export interface ReusePortTcpInit extends TCPOptions {
  /**
   * Which way dials bind the listening port. `auto` uses `net.BoundSocket` (built into Node
   * >= 24.19) when there; `off` dials from ephemeral ports like @libp2p/tcp. Default: `'auto'`.
   */
  reusePortDial?: 'auto' | ReusePortMethod;
  /** One socket write per tick's writes (sidecar/patches/tcp.ts). Default: true. */
  coalesceWrites?: boolean;
  /**
   * Called once per transport when dials cannot come from the listening port (dials then work,
   * hole punching does not). Default: `process.emitWarning`.
   */
  onUnavailable?: (err: ReusePortUnavailableError) => void;
}

/** The method a transport built with `init` will use, and why it fell back, if it did. */
export interface ReusePortSupport {
  method: ReusePortMethod;
  unavailable?: ReusePortUnavailableError;
}

/** The source port of dials: a listener's bound ip:port. */
interface LocalEndpoint {
  host: string;
  port: number;
  family: 4 | 6;
}

export function detectReusePort(init: ReusePortTcpInit = {}): ReusePortSupport {
  const wanted = init.reusePortDial ?? 'auto';
  if (wanted === 'off') {
    return { method: 'off' };
  }
  // Checked at run time: @types/node knows BoundSocket, an older Node 24 does not have it.
  if (typeof Reflect.get(net, 'BoundSocket') === 'function') {
    return { method: 'bound-socket' };
  }
  return {
    method: 'off',
    unavailable: new ReusePortUnavailableError(`net.BoundSocket is missing in ${process.version}`),
  };
}

/** Host, port and family of an /ip4|ip6/.../tcp/... multiaddr; undefined for DNS, unix and others. */
function ipPort(ma: Multiaddr): LocalEndpoint | undefined {
  const [ip, tcpPart] = ma.getComponents();
  if ((ip?.name !== 'ip4' && ip?.name !== 'ip6') || tcpPart?.name !== 'tcp' || ip.value == null) {
    return undefined;
  }
  return { host: ip.value, port: Number(tcpPart.value), family: ip.name === 'ip4' ? 4 : 6 };
}

const isLoopback = (host: string): boolean => host.startsWith('127.') || host === '::1';
const isWildcard = (host: string): boolean => host === '0.0.0.0' || host === '::';

/** The listening endpoints of this transport, kept current as listeners open and close. */
class ListenPorts {
  private readonly endpoints = new Map<Listener, LocalEndpoint>();

  track(listener: Listener): Listener {
    const listen = listener.listen.bind(listener);
    listener.listen = async (ma: Multiaddr): Promise<void> => {
      await listen(ma);
      const bound = ipPort(ma);
      // port 0 means the kernel chose: every address the listener reports carries that port
      const port = listener
        .getAddrs()
        .map(ipPort)
        .find((e) => e !== undefined)?.port;
      if (bound !== undefined && port !== undefined) {
        this.endpoints.set(listener, { ...bound, port });
      }
    };
    listener.addEventListener('close', () => this.endpoints.delete(listener));
    return listener;
  }

  /** A listener of the remote's family that can reach it; a wildcard one first. */
  pick(remote: LocalEndpoint): LocalEndpoint | undefined {
    const usable = [...this.endpoints.values()].filter(
      (e) => e.family === remote.family && (!isLoopback(e.host) || isLoopback(remote.host)),
    );
    return usable.find((e) => isWildcard(e.host)) ?? usable[0];
  }
}

function errorCode(err: unknown): string | undefined {
  const code: unknown = typeof err === 'object' && err !== null ? Reflect.get(err, 'code') : undefined;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A libp2p TCP transport (same options as `tcp()`) that listens with SO_REUSEPORT and dials from
 * its listening port when one of the remote's IP family is open.
 */
export function reusePortTcp(init: ReusePortTcpInit = {}): (components: TCPComponents) => Transport {
  return (components) => {
    // @libp2p/tcp spreads listenOpts into server.listen(): that is where reusePort reaches Node.
    const listenOpts: TCPSocketOptions & { reusePort: boolean } = { ...init.listenOpts, reusePort: true };
    const transport = tcp({ ...init, listenOpts })(components);
    Object.defineProperty(transport, Symbol.toStringTag, { value: '@peertunnel/reuseport-tcp' });
    const log = components.logger.forComponent('peertunnel:nat:reuseport-tcp');
    const warn = init.onUnavailable ?? ((err: Error) => process.emitWarning(err.message, err.name));

    if (init.coalesceWrites !== false) coalesceTcpWrites(transport);
    const support = detectReusePort(init);
    if (support.unavailable !== undefined) {
      warn(support.unavailable);
    }
    if (support.method === 'off') {
      return transport;
    }
    const ports = new ListenPorts();
    const createListener = transport.createListener.bind(transport);
    transport.createListener = (options) => ports.track(createListener(options));

    const connectFrom = async (
      local: LocalEndpoint,
      options: TCPDialOptions,
      ma: Multiaddr,
      next: TcpConnect,
    ) => {
      options.signal.throwIfAborted();
      const handle = new net.BoundSocket({
        host: local.host,
        port: local.port,
        reusePort: true,
        ipv6Only: local.family === 6,
      });
      try {
        // net.connect() adopts the bound handle, so timeouts, aborts and metrics stay stock
        const withHandle: TCPDialOptions & { handle: net.BoundSocket } = { ...options, handle };
        return await next(ma, withHandle);
      } finally {
        handle[Symbol.dispose](); // frees it if it was never adopted; a no-op otherwise
      }
    };

    addTcpConnectLayer(transport, (next) => async (ma, options) => {
      const remote = ipPort(ma);
      const local = remote === undefined ? undefined : ports.pick(remote);
      if (remote === undefined || local === undefined) {
        return next(ma, options);
      }
      try {
        return await connectFrom(local, options, ma, next);
      } catch (err) {
        const code = errorCode(err);
        if (options.signal.aborted || code === undefined || !LOCAL_ENDPOINT_ERRORS.has(code)) {
          throw err;
        }
        log(
          'dial to %a from %s:%d failed (%s), dialing from an ephemeral port',
          ma,
          local.host,
          local.port,
          code,
        );
        return next(ma, options);
      }
    });
    return transport;
  };
}
