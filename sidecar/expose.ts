/**
 * One `expose`: a stream handler for /x/peertunnel/<name>/1.0.0 that connects each incoming
 * stream to this node's own configured target and nothing else. No byte of the stream chooses a
 * host or a port.
 */
import { connect, type Socket } from 'node:net';
import type { Libp2p, Stream } from '@libp2p/interface';
import type { ExposeConfig } from './config.js';
import { serviceProtocol } from './discovery.js';
import { MAX_TUNNEL_STREAMS } from './forward.js';
import type { Logger } from './logger.js';
import { meteredPipe } from './metered-pipe.js';
import type { SidecarMetrics } from './metrics.js';

export interface ExposeHandlerInit {
  /** Give the local target this long to accept. @default 5000 */
  connectTimeoutMs?: number;
}

export interface ExposeHandlerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>;
  metrics: SidecarMetrics;
  logger: Logger;
}

export class ExposeHandler {
  readonly config: ExposeConfig;
  readonly protocol: string;
  private readonly c: ExposeHandlerComponents;
  private readonly connectTimeoutMs: number;
  private readonly sockets = new Set<Socket>();
  private served = 0;

  constructor(components: ExposeHandlerComponents, config: ExposeConfig, init: ExposeHandlerInit = {}) {
    this.c = components;
    this.config = config;
    this.protocol = serviceProtocol(config.name);
    this.connectTimeoutMs = init.connectTimeoutMs ?? 5_000;
  }

  async start(): Promise<void> {
    await this.c.libp2p.handle(
      this.protocol,
      (stream) => {
        this.serve(stream).catch((err: unknown) => {
          this.c.logger.error({ event: 'expose_failed', service: this.config.name, err }, 'expose failed');
          stream.abort(err instanceof Error ? err : new Error(String(err)));
        });
      },
      {
        maxInboundStreams: MAX_TUNNEL_STREAMS,
        maxOutboundStreams: MAX_TUNNEL_STREAMS,
        runOnLimitedConnection: true,
      },
    );
    this.c.logger.info(
      { event: 'service_exposed', service: this.config.name, host: this.config.host, port: this.config.port },
      'service exposed',
    );
  }

  async stop(): Promise<void> {
    await this.c.libp2p.unhandle(this.protocol);
    for (const s of this.sockets) s.destroy();
  }

  private async serve(stream: Stream): Promise<void> {
    const service = this.config.name;
    const labels = { service, side: 'expose' } as const;
    // Hold the remote's bytes (yamux stops granting window) until the target has accepted.
    if (stream.readStatus === 'readable') stream.pause();
    const socket = connect({
      host: this.config.host,
      port: this.config.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`connect timeout after ${this.connectTimeoutMs} ms`)),
          this.connectTimeoutMs,
        );
        socket.once('connect', () => {
          clearTimeout(timer);
          socket.off('error', reject);
          resolve();
        });
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
    } catch (err) {
      socket.destroy();
      this.c.metrics.streamsFailed.inc({ ...labels, reason: 'target_unreachable' });
      this.c.logger.warn(
        { event: 'target_unreachable', service, host: this.config.host, port: this.config.port, err },
        'exposed target refused the connection',
      );
      stream.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    this.served++;
    await meteredPipe(socket, stream, this.c.metrics, service, 'expose');
  }

  status(): ExposeStatus {
    return {
      name: this.config.name,
      host: this.config.host,
      port: this.config.port,
      protocol: this.protocol,
      activeConnections: this.sockets.size,
      servedConnections: this.served,
    };
  }
}

export interface ExposeStatus {
  name: string;
  host: string;
  port: number;
  protocol: string;
  activeConnections: number;
  servedConnections: number;
}
