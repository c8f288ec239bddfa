/**
 * The dials a hole punch makes, and what they leave behind:
 * - B's dial runs the upgrade as the responder of the TCP simultaneous open; libp2p's dial queue
 *   drops that option, so the dial-responder patch (patches/libp2p.ts) asks `isResponderDial`
 *   for each address it dials;
 * - a connection that opens while a punch dials its peer is that punch's result, marked at once
 *   (before the dial's promise settles) so that its first reported path is already hole_punched.
 */
import type { Connection, PeerId } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';

/** Punch dials jump the dial queue: the peer dials back within milliseconds. */
export const PUNCH_DIAL_PRIORITY = 100;

export interface PunchDialOptions {
  signal?: AbortSignal;
  priority?: number;
  force?: boolean;
  /** false: run the upgrade as the responder (noise, multistream-select and yamux roles). */
  initiator?: boolean;
}

export interface PunchConnectionManager {
  openConnection(target: Multiaddr[], options?: PunchDialOptions): Promise<Connection>;
}

export class PunchDialer {
  /** Punch dials in flight per peer. */
  private readonly punching = new Map<string, number>();
  /** Addresses B dials as the responder right now. */
  private readonly responderDials = new Set<string>();
  private readonly punched = new WeakSet<Connection>();

  constructor(private readonly connectionManager: PunchConnectionManager) {}

  async dial(
    peer: PeerId,
    addrs: Multiaddr[],
    options: { deadline: AbortSignal; responder: boolean },
  ): Promise<Connection> {
    const key = peer.toString();
    const responder = options.responder ? addrs.map((ma) => ma.toString()) : [];
    for (const ma of responder) this.responderDials.add(ma);
    this.punching.set(key, (this.punching.get(key) ?? 0) + 1);
    try {
      const connection = await this.connectionManager.openConnection(addrs, {
        signal: options.deadline,
        priority: PUNCH_DIAL_PRIORITY,
        // A relayed connection to the peer exists: without force the dial would return it.
        force: true,
        ...(options.responder ? { initiator: false } : {}),
      });
      this.punched.add(connection);
      return connection;
    } finally {
      for (const ma of responder) this.responderDials.delete(ma);
      const n = (this.punching.get(key) ?? 1) - 1;
      if (n > 0) this.punching.set(key, n);
      else this.punching.delete(key);
    }
  }

  isPunching(peer: string): boolean {
    return this.punching.has(peer);
  }

  isResponderDial(ma: Multiaddr): boolean {
    return this.responderDials.has(ma.toString());
  }

  /** Marks a connection that opened during a punch dial to its peer. */
  mark(connection: Connection): void {
    this.punched.add(connection);
  }

  wasPunched(connection: Connection): boolean {
    return this.punched.has(connection);
  }
}
