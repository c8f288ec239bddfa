/** How a libp2p connection reaches its peer, for /status, metrics and path-change logs. */
import type { Connection } from '@libp2p/interface';
import { isCircuitAddress, isRelayedConnection } from '../../contracts/relayed.js';
import type { PathKind } from '../admin/metrics.js';

/**
 * Connections the NAT code knows more about than their address tells (a hole-punched or a
 * port-mapped one looks like any direct TCP connection). Set by the NAT layer, read here.
 */
export class PathRegistry {
  private readonly marked = new WeakMap<Connection, PathKind>();

  mark(connection: Connection, path: PathKind): void {
    this.marked.set(connection, path);
  }

  pathOf(connection: Connection): PathKind {
    if (isRelayedConnection(connection)) return 'relayed';
    return this.marked.get(connection) ?? 'direct';
  }
}

/**
 * The connection a new stream should use: an open direct one, else an unlimited relayed one, else
 * a limited relayed one. Our relays run without limits, so `limits` alone cannot tell a relayed
 * connection from a direct one: after a hole punch both are unlimited and the direct one must win.
 */
export function bestConnection(connections: Connection[]): Connection | undefined {
  let relayed: Connection | undefined;
  let limited: Connection | undefined;
  for (const c of connections) {
    if (c.status !== 'open') continue;
    if (c.limits !== undefined) limited ??= c;
    else if (isCircuitAddress(c.remoteAddr)) relayed ??= c;
    else return c;
  }
  return relayed ?? limited;
}
