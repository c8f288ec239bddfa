/**
 * The credential exchange, CREDENTIAL_PROTOCOL: the side that opens the stream sends its own
 * credential (length-prefixed; empty when it has none), the other answers with its own, and each
 * keeps what it got (peer-credentials.ts). Each node opens one when a connection opens, and one to
 * every connected peer when its own credential is renewed. A message over MAX_CREDENTIAL_BYTES is
 * refused unread and ends the stream: a peer that sends one costs only itself.
 */
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface';
import { lpStream } from '@libp2p/utils';
import {
  CREDENTIAL_PROTOCOL,
  type CredentialRefusal,
  MAX_CREDENTIAL_BYTES,
} from '../../contracts/credential.js';
import { bestConnection } from '../node/connection-paths.js';
import type { Logger } from '../node/logger.js';
import type { PeerCredentials, PeerVerdict } from './peer-credentials.js';

/** One exchange, both ways, within this long. */
export const EXCHANGE_TIMEOUT_MS = 5_000;
/** Renewals sent at once. */
const PUSH_CONCURRENCY = 8;

export interface ExchangeComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle' | 'addEventListener' | 'removeEventListener' | 'getConnections'>;
  peers: PeerCredentials;
  logger: Logger;
  /** This node's credential now (empty: none). */
  own(): Uint8Array;
  /** Called with each credential (or absence of one) a peer presented. */
  onReceived(peer: string, verdict: PeerVerdict, changed: boolean): void;
}

export class CredentialExchange {
  private readonly pending = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(private readonly c: ExchangeComponents) {
    this.onOpen = this.onOpen.bind(this);
    this.onDisconnect = this.onDisconnect.bind(this);
  }

  async start(): Promise<void> {
    await this.c.libp2p.handle(
      CREDENTIAL_PROTOCOL,
      (stream, connection) => this.respond(stream, connection),
      {
        // Only a renewal overlapping the exchange at connect: a third at once is refused by libp2p.
        maxInboundStreams: 2,
        maxOutboundStreams: 2,
        runOnLimitedConnection: true,
      },
    );
    this.c.libp2p.addEventListener('connection:open', this.onOpen);
    this.c.libp2p.addEventListener('peer:disconnect', this.onDisconnect);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.c.libp2p.removeEventListener('connection:open', this.onOpen);
    this.c.libp2p.removeEventListener('peer:disconnect', this.onDisconnect);
    await this.c.libp2p.unhandle(CREDENTIAL_PROTOCOL).catch(() => undefined);
  }

  /** An exchange with the peer: the one under way, or a new one on its best connection. */
  exchange(peer: string, connection?: Connection): Promise<void> {
    let p = this.pending.get(peer);
    if (p === undefined) {
      const conn =
        connection ??
        bestConnection(this.c.libp2p.getConnections().filter((c) => c.remotePeer.toString() === peer));
      if (conn === undefined) return Promise.resolve();
      p = this.initiate(peer, conn).finally(() => this.pending.delete(peer));
      this.pending.set(peer, p);
    }
    return p;
  }

  /** Sends the renewed credential to every connected peer (a few at a time). */
  async pushAll(): Promise<void> {
    const peers = [...new Set(this.c.libp2p.getConnections().map((c) => c.remotePeer.toString()))];
    const next = async (): Promise<void> => {
      for (let peer = peers.pop(); peer !== undefined && !this.stopped; peer = peers.pop()) {
        // A renewal must go out even while a connect-time exchange is under way.
        await this.pending.get(peer)?.catch(() => undefined);
        await this.exchange(peer);
      }
    };
    await Promise.all(Array.from({ length: PUSH_CONCURRENCY }, next));
  }

  private onOpen(evt: CustomEvent<Connection>): void {
    if (this.stopped) return;
    void this.exchange(evt.detail.remotePeer.toString(), evt.detail);
  }

  private onDisconnect(evt: CustomEvent<PeerId>): void {
    this.c.peers.drop(evt.detail.toString());
  }

  private async initiate(peer: string, connection: Connection): Promise<void> {
    const signal = AbortSignal.timeout(EXCHANGE_TIMEOUT_MS);
    let stream: Stream | undefined;
    try {
      stream = await connection.newStream(CREDENTIAL_PROTOCOL, { signal, runOnLimitedConnection: true });
      const lp = lpStream(stream, { maxDataLength: MAX_CREDENTIAL_BYTES });
      await lp.write(this.c.own(), { signal });
      const answer = await lp.read({ signal });
      await stream.close({ signal }).catch(() => undefined);
      this.deliver(peer, answer.subarray());
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)));
      this.failed(peer, err);
    }
  }

  private async respond(stream: Stream, connection: Connection): Promise<void> {
    const peer = connection.remotePeer.toString();
    const signal = AbortSignal.timeout(EXCHANGE_TIMEOUT_MS);
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_CREDENTIAL_BYTES });
      const theirs = await lp.read({ signal });
      this.deliver(peer, theirs.subarray());
      await lp.write(this.c.own(), { signal });
      await stream.close({ signal });
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      this.failed(peer, err);
    }
  }

  private deliver(peer: string, bytes: Uint8Array): void {
    const { verdict, changed } = this.c.peers.received(peer, bytes, Date.now() / 1000);
    this.c.onReceived(peer, verdict, changed);
  }

  private failed(peer: string, err: unknown): void {
    const name = err instanceof Error ? err.name : '';
    const reason: CredentialRefusal =
      name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError'
        ? 'oversized'
        : name === 'UnsupportedProtocolError'
          ? 'no_credential'
          : 'credential_timeout';
    this.c.peers.failed(peer, reason);
    this.c.logger.debug(
      { event: 'credential_exchange_failed', peer, reason, err },
      'credential exchange failed',
    );
    if (reason === 'oversized') this.c.onReceived(peer, { ok: false, reason }, false);
  }
}
