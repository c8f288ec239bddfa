/**
 * One `forward`: a local TCP listener whose every accepted connection becomes one stream
 * /x/peertunnel/<name>/1.1.0 (or 1.0.0) to a provider of the name, multiplexed over one libp2p
 * connection per provider. Which provider and how the stream is opened: stream-opener.ts; the
 * connections to providers: provider-dialer.ts.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Libp2p, Stream } from '@libp2p/interface';
import type { ForwardStatus } from '../../contracts/sidecar-status.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { ForwardConfig } from '../config/config.js';
import type { ServiceDirectory } from '../discovery/service-directory.js';
import type { PathRegistry } from '../node/connection-paths.js';
import { NoProviderError } from '../node/errors.js';
import type { Logger } from '../node/logger.js';
import type { TunnelTrust } from '../trust/node-trust.js';
import { meteredPipe } from './metered-pipe.js';
import { ProviderDialer } from './provider-dialer.js';
import { StreamOpenError } from './stream-open-error.js';
import { StreamOpener } from './stream-opener.js';

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
  directory: Pick<
    ServiceDirectory,
    'pool' | 'waitForProvider' | 'waitForNewProvider' | 'freshAddresses' | 'subscribe'
  >;
  paths: PathRegistry;
  metrics: SidecarMetrics;
  logger: Logger;
  trust?: TunnelTrust;
}

export class ForwardListener {
  readonly config: ForwardConfig;
  private readonly c: ForwardListenerComponents;
  private readonly dialer: ProviderDialer;
  private readonly opener: StreamOpener;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private boundPort?: number;
  private unsubscribe?: () => void;

  constructor(components: ForwardListenerComponents, config: ForwardConfig, init: ForwardListenerInit = {}) {
    this.c = components;
    this.config = config;
    this.dialer = new ProviderDialer(components, config.name, init.dialTimeoutMs ?? 3_000);
    this.opener = new StreamOpener({ ...components, dialer: this.dialer }, config.name, {
      streamTimeoutMs: init.streamTimeoutMs ?? 5_000,
      providerWaitMs: init.providerWaitMs ?? 10_000,
    });
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
      if (e.type === 'providers_found' && e.service === this.config.name) this.dialer.connectUnconnected();
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
      stream = await this.opener.open();
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
        const conn = this.dialer.connection(p.peer);
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
