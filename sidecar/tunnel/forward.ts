/**
 * One `forward`: a local TCP listener whose every accepted connection becomes one stream
 * /x/peertunnel/<name>/1.0.0 to a provider of the name, multiplexed over one libp2p connection
 * per provider.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Connection, Libp2p, PeerId, Stream, StreamMessageEvent } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import type { ForwardStatus } from '../../contracts/sidecar-status.js';
import type { SidecarMetrics, StreamFailureReason } from '../admin/metrics.js';
import type { ForwardConfig } from '../config/config.js';
import {
  type ServiceDirectory,
  serviceProtocol,
  serviceProtocolAck,
  TARGET_BUSY,
  TARGET_CONNECTED,
} from '../discovery/service-directory.js';
import { bestConnection, type PathRegistry } from '../node/connection-paths.js';
import { NoProviderError } from '../node/errors.js';
import type { Logger } from '../node/logger.js';
import { meteredPipe } from './metered-pipe.js';
import type { ProviderPool } from './provider-pool.js';

export interface ForwardListenerInit {
  /** Give one provider this long to connect. @default 3000 */
  dialTimeoutMs?: number;
  /** Give stream negotiation this long, and then the exposer's target as long again. @default 5000 */
  streamTimeoutMs?: number;
  /** Wait this long for a first provider when none is known. @default 10000 */
  providerWaitMs?: number;
}

export interface ForwardListenerComponents {
  libp2p: Pick<Libp2p, 'dial' | 'getConnections'>;
  directory: Pick<ServiceDirectory, 'pool' | 'waitForProvider' | 'freshAddresses' | 'subscribe'>;
  paths: PathRegistry;
  metrics: SidecarMetrics;
  logger: Logger;
}

/** Outbound stream limit per connection for our protocols (libp2p's default of 64 is far too low). */
export const MAX_TUNNEL_STREAMS = 100_000;

/** Parsed provider peer IDs kept per forward before the cache starts over. */
const MAX_CACHED_PEER_IDS = 1_024;

class StreamOpenError extends Error {
  readonly reason: StreamFailureReason;
  constructor(reason: StreamFailureReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StreamOpenError';
    this.reason = reason;
  }
}

/** A provider could not be connected to at all (the pool already counted it). */
class ProviderDialError extends StreamOpenError {
  constructor(message: string, options?: ErrorOptions) {
    super('dial_failed', message, options);
    this.name = 'ProviderDialError';
  }
}

export class ForwardListener {
  readonly config: ForwardConfig;
  private readonly c: ForwardListenerComponents;
  private readonly protocol: string;
  private readonly protocols: string[];
  private readonly dialTimeoutMs: number;
  private readonly streamTimeoutMs: number;
  private readonly providerWaitMs: number;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private readonly pendingDials = new Map<string, Promise<Connection>>();
  /**
   * Parsed peer IDs of providers. A fresh PeerId per TCP connection cost a base58 decode and,
   * in getConnections, an encode: ~4% of a forwarder's CPU at a high connection rate.
   */
  private readonly peerIds = new Map<string, PeerId>();
  private boundPort?: number;
  private unsubscribe?: () => void;

  constructor(components: ForwardListenerComponents, config: ForwardConfig, init: ForwardListenerInit = {}) {
    this.c = components;
    this.config = config;
    this.protocol = serviceProtocol(config.name);
    // The acknowledged version first; kubo's `ipfs p2p` and older nodes answer only the plain one.
    this.protocols = [serviceProtocolAck(config.name), this.protocol];
    this.dialTimeoutMs = init.dialTimeoutMs ?? 3_000;
    this.streamTimeoutMs = init.streamTimeoutMs ?? 5_000;
    this.providerWaitMs = init.providerWaitMs ?? 10_000;
  }

  get listening(): boolean {
    return this.server?.listening === true;
  }

  /** The bound port (differs from config only when the config asked for an ephemeral one). */
  get port(): number | undefined {
    return this.boundPort;
  }

  async start(): Promise<void> {
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (socket) => {
      this.accept(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: this.config.bind, port: this.config.localPort, backlog: 1024 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    this.boundPort = typeof addr === 'object' && addr !== null ? addr.port : this.config.localPort;
    server.on('error', (err) =>
      this.c.logger.error(
        { event: 'listener_error', service: this.config.name, err },
        'forward listener error',
      ),
    );
    // A provider discovery just found is dialled now, so it takes its turns from the next
    // connection on rather than after a first connection passed it over.
    this.unsubscribe = this.c.directory.subscribe((e) => {
      if (e.type === 'providers_found' && e.service === this.config.name) this.connectUnconnected();
    });
    this.c.metrics.forwardListenerUp.set({ service: this.config.name }, 1);
    this.c.logger.info(
      { event: 'forward_listening', service: this.config.name, bind: this.config.bind, port: this.boundPort },
      'forward listening',
    );
  }

  /** Closes the listener (new connections are refused); connections already accepted go on. */
  stopAccepting(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.c.metrics.forwardListenerUp.set({ service: this.config.name }, 0);
    // close() stops accepting at once; its callback waits for the open connections, so not here.
    if (this.server?.listening === true) this.server.close();
  }

  /** Accepted connections still open. */
  get active(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    this.stopAccepting();
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server === undefined) return;
    // Resolves once the destroyed sockets are gone (or at once, the server already closed).
    await new Promise<void>((resolve) => {
      if (this.sockets.size === 0 && !server.listening) resolve();
      else server.once('close', () => resolve());
      setTimeout(resolve, 1_000).unref();
    });
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    // An error before the pipe takes the socket must not crash the process.
    const early = (err: Error) =>
      this.c.logger.debug({ event: 'socket_error', service: this.config.name, err }, 'local socket error');
    socket.on('error', early);
    this.tunnel(socket, early).catch((err: unknown) => {
      this.c.logger.error({ event: 'forward_failed', service: this.config.name, err }, 'forward failed');
      socket.destroy();
    });
  }

  private async tunnel(socket: Socket, early: (err: Error) => void): Promise<void> {
    const service = this.config.name;
    const labels = { service, side: 'forward' } as const;
    const started = performance.now();
    let stream: Stream;
    try {
      stream = await this.openStream();
    } catch (err) {
      const reason =
        err instanceof StreamOpenError
          ? err.reason
          : err instanceof NoProviderError
            ? 'no_provider'
            : 'local_error';
      this.c.metrics.streamsFailed.inc({ ...labels, reason });
      this.c.logger.warn(
        { event: 'stream_open_failed', service, reason, err },
        'could not open a tunnel stream',
      );
      socket.resetAndDestroy();
      return;
    }
    this.c.metrics.streamOpenSeconds.observe({ service }, (performance.now() - started) / 1000);
    socket.off('error', early);
    socket.resume();
    const result = await meteredPipe(socket, stream, this.c.metrics, service, 'forward');
    if (result.outcome !== 'closed') {
      this.c.logger.debug(
        { event: 'stream_reset', service, outcome: result.outcome, err: result.error },
        'tunnel stream ended in error',
      );
    }
  }

  /**
   * Tries providers until one gives a stream: connected ones in turn first, then (none left) the
   * first of the unconnected ones to connect, then those in backoff. Healthy providers without a
   * connection are dialled in the background meanwhile, so a dead pod's record or a provider that
   * closed its connection (it stopped) costs no client a dial while a connected replica is left.
   */
  private async openStream(): Promise<Stream> {
    const pool = this.c.directory.pool(this.config.name);
    if (pool === undefined) throw new NoProviderError(this.config.name, 'not a forwarded service');
    if (pool.size === 0 && !(await this.c.directory.waitForProvider(this.config.name, this.providerWaitMs))) {
      throw new NoProviderError(this.config.name, 'no provider found in the network');
    }
    const selection = pool.select(Date.now(), (peer) => this.isConnected(peer));
    for (const peer of selection.unconnected) this.connectInBackground(peer);
    let last: unknown;
    const attempt = async (peer: string): Promise<Stream | undefined> => {
      pool.attempted(peer);
      try {
        const stream = await this.streamTo(peer);
        pool.succeeded(peer);
        return stream;
      } catch (err) {
        last = err;
        this.providerFailed(pool, peer, err);
        return undefined;
      }
    };
    for (const peer of selection.connected) {
      const stream = await attempt(peer);
      if (stream !== undefined) return stream;
    }
    const dialling = new Set(selection.unconnected);
    for (;;) {
      const peer = await this.firstConnected(dialling, (err) => {
        last = err;
      });
      if (peer === undefined) break;
      dialling.delete(peer);
      const stream = await attempt(peer);
      if (stream !== undefined) return stream;
    }
    for (const peer of selection.backedOff) {
      const stream = await attempt(peer);
      if (stream !== undefined) return stream;
    }
    if (last instanceof StreamOpenError) throw last;
    throw new NoProviderError(this.config.name, 'every known provider failed');
  }

  private providerFailed(pool: ProviderPool, peer: string, err: unknown): void {
    if (err instanceof ProviderDialError) {
      // connectionTo counted it in the pool (once per dial, however many connections waited).
    } else if (err instanceof StreamOpenError && err.reason === 'refused') {
      // The peer no longer exposes the name: stop sending it connections.
      pool.remove(peer);
      this.c.metrics.providers.set({ service: this.config.name }, pool.size);
    } else pool.failed(peer, Date.now());
    this.c.logger.info(
      {
        event: 'provider_failed',
        service: this.config.name,
        peer,
        reason: err instanceof StreamOpenError ? err.reason : 'local_error',
      },
      'provider failed, trying the next',
    );
  }

  private isConnected(peer: string): boolean {
    return bestConnection(this.c.libp2p.getConnections(this.peerIdOf(peer))) !== undefined;
  }

  /** Dials every healthy provider this node holds no connection to, in the background. */
  private connectUnconnected(): void {
    const pool = this.c.directory.pool(this.config.name);
    for (const peer of pool?.unconnected(Date.now(), (p) => this.isConnected(p)) ?? [])
      this.connectInBackground(peer);
  }

  /** Dials a provider nobody waits for yet; the outcome lands in the pool. */
  private connectInBackground(peer: string): void {
    if (this.pendingDials.has(peer)) return;
    this.connectionTo(peer).catch(() => {
      // Counted and logged by connectionTo.
    });
  }

  /**
   * The first of `peers` to have a connection (dialling those without one, or joining their
   * dials); failed ones leave the set. Undefined once every one failed.
   */
  private async firstConnected(
    peers: Set<string>,
    onError: (err: unknown) => void,
  ): Promise<string | undefined> {
    if (peers.size === 0) return undefined;
    try {
      return await Promise.any(
        [...peers].map((peer) =>
          this.connectionTo(peer).then(
            () => peer,
            (err: unknown) => {
              peers.delete(peer);
              onError(err);
              throw err;
            },
          ),
        ),
      );
    } catch {
      return undefined;
    }
  }

  private async streamTo(peer: string): Promise<Stream> {
    const connection = await this.connectionTo(peer);
    try {
      return await this.newStream(peer, connection);
    } catch (err) {
      // A relayed connection that a hole punch just replaced closes under a stream being opened
      // on it (seen in the e2e: "Unexpected EOF", a client's connection reset). Once more on the
      // connection that replaced it; a refusal or a timeout is the peer's answer, not the path's.
      const next = bestConnection(this.c.libp2p.getConnections(this.peerIdOf(peer)));
      const replaced = next !== undefined && next !== connection;
      if (!(err instanceof StreamOpenError) || err.reason !== 'dial_failed' || !replaced) throw err;
      this.c.logger.debug(
        { event: 'stream_retried', service: this.config.name, peer, err },
        'stream open failed on a connection that was replaced, opening it on the new one',
      );
      return this.newStream(peer, next);
    }
  }

  private async newStream(peer: string, connection: Connection): Promise<Stream> {
    const stream = await this.negotiate(peer, connection);
    if (stream.protocol !== this.protocols[0]) return stream;
    // The exposer's target connect timeout (5 s) comes first; this only bounds a silent peer.
    const status = await readStatus(stream, this.streamTimeoutMs + 1_000);
    if (status === TARGET_CONNECTED) return stream;
    stream.abort(new Error('exposer could not serve the stream'));
    if (status === TARGET_BUSY)
      throw new StreamOpenError('provider_busy', `${peer} serves as many streams as it may`);
    if (status === 'timeout')
      throw new StreamOpenError('timeout', `${peer} did not say whether its target accepted`);
    throw new StreamOpenError('target_unreachable', `${peer}'s target did not accept`);
  }

  private async negotiate(peer: string, connection: Connection): Promise<Stream> {
    try {
      return await connection.newStream(this.protocols, {
        signal: AbortSignal.timeout(this.streamTimeoutMs),
        runOnLimitedConnection: true,
        maxOutboundStreams: MAX_TUNNEL_STREAMS,
      });
    } catch (err) {
      const name = err instanceof Error ? err.name : '';
      if (name === 'UnsupportedProtocolError')
        throw new StreamOpenError('refused', `${peer} refused ${this.protocol}`, { cause: err });
      if (name === 'TimeoutError' || name === 'AbortError')
        throw new StreamOpenError('timeout', `stream to ${peer} timed out`, { cause: err });
      throw new StreamOpenError('dial_failed', `stream to ${peer} failed`, { cause: err });
    }
  }

  private peerIdOf(peer: string): PeerId {
    let id = this.peerIds.get(peer);
    if (id === undefined) {
      // Providers come and go (dead pods): never let the cache outgrow a sane provider count.
      if (this.peerIds.size >= MAX_CACHED_PEER_IDS) this.peerIds.clear();
      id = peerIdFromString(peer);
      this.peerIds.set(peer, id);
    }
    return id;
  }

  /** An open connection to the peer, dialling once for all the TCP connections that need it. */
  private connectionTo(peer: string): Promise<Connection> {
    const peerId = this.peerIdOf(peer);
    const existing = bestConnection(this.c.libp2p.getConnections(peerId));
    if (existing !== undefined) return Promise.resolve(existing);
    let pending = this.pendingDials.get(peer);
    if (pending === undefined) {
      pending = this.c.libp2p
        .dial(peerId, { signal: AbortSignal.timeout(this.dialTimeoutMs) })
        .catch(async (err: unknown) => {
          // Its addresses may be stale (its relay died and it reserved on another): ask the
          // network once, and dial again only the addresses that brought and were not tried.
          const fresh = await this.c.directory.freshAddresses(this.config.name, peer, this.dialTimeoutMs);
          if (fresh.length === 0) throw err;
          this.c.logger.info(
            {
              event: 'provider_addresses_refreshed',
              service: this.config.name,
              peer,
              addresses: fresh.map((a) => a.toString()),
            },
            'dial failed, dialling the fresh addresses',
          );
          // One at a time in that order: libp2p would re-sort a list, maybe loopback first.
          const deadline = AbortSignal.timeout(this.dialTimeoutMs);
          let last: unknown = err;
          for (const addr of fresh) {
            if (deadline.aborted) break;
            try {
              return await this.c.libp2p.dial(addr, { signal: deadline });
            } catch (e) {
              last = e;
            }
          }
          throw last;
        })
        .catch((err: unknown) => {
          // Once per dial: a dead provider backs off however many connections waited for it.
          const pool = this.c.directory.pool(this.config.name);
          pool?.failed(peer, Date.now());
          const state = pool?.list().find((p) => p.peer === peer);
          this.c.logger.info(
            {
              event: 'provider_unreachable',
              service: this.config.name,
              peer,
              failures: state?.failures ?? null,
              retryInMs: state === undefined ? null : Math.max(0, state.retryAt - Date.now()),
            },
            'could not connect to a provider, backing off',
          );
          throw new ProviderDialError(`cannot reach ${peer}`, { cause: err });
        })
        .finally(() => this.pendingDials.delete(peer));
      this.pendingDials.set(peer, pending);
    }
    return pending;
  }

  /** What /status shows for this forward. */
  status(): ForwardStatus {
    const pool = this.c.directory.pool(this.config.name);
    const now = Date.now();
    return {
      name: this.config.name,
      bind: this.config.bind,
      localPort: this.boundPort ?? this.config.localPort,
      listening: this.listening,
      activeConnections: this.sockets.size,
      providers: (pool?.list() ?? []).map((p) => {
        const conn = bestConnection(this.c.libp2p.getConnections(this.peerIdOf(p.peer)));
        return {
          peer: p.peer,
          connected: conn !== undefined,
          path: conn === undefined ? null : this.c.paths.pathOf(conn),
          healthy: p.retryAt <= now,
          failures: p.failures,
          picks: p.picks,
          attempts: p.attempts,
        };
      }),
    };
  }
}

/**
 * The exposer's status byte on the acknowledged protocol; bytes after it (a server that speaks
 * first) stay in the stream for the pipe. 'reset' when the stream ended first.
 */
function readStatus(stream: Stream, timeoutMs: number): Promise<number | 'reset' | 'timeout'> {
  return new Promise((resolve) => {
    const done = (result: number | 'reset' | 'timeout') => {
      clearTimeout(timer);
      stream.removeEventListener('message', onMessage);
      stream.removeEventListener('close', onEnd);
      stream.removeEventListener('remoteCloseWrite', onEnd);
      resolve(result);
    };
    const onMessage = (evt: StreamMessageEvent) => {
      const data = evt.data instanceof Uint8Array ? evt.data : evt.data.subarray();
      if (data.byteLength === 0) return;
      // Taken off before unshift, so the rest waits in the stream's buffer for the pipe.
      done(data[0] ?? -1);
      if (data.byteLength > 1) stream.unshift(data.subarray(1));
    };
    const onEnd = () => {
      if (stream.readBufferLength === 0) done('reset');
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    stream.addEventListener('message', onMessage);
    stream.addEventListener('close', onEnd);
    stream.addEventListener('remoteCloseWrite', onEnd);
  });
}
