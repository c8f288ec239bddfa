/**
 * Over 300 lines on purpose: the handler, the target-connected byte and the target probe share one target state.
 *
 * One `expose`: a stream handler for /x/peertunnel/<name>/1.1.0 and /1.0.0 that connects each
 * incoming stream to this node's own configured target and nothing else. No byte of the stream
 * chooses a host or a port.
 *
 * On 1.1.0 the target is dialled first and one status byte tells the forwarder whether it
 * accepted, so a forwarder never hands its client a stream to a dead target. A target that
 * refuses takes the name out of service: the handler is removed (peers see it in identify and get
 * "na"), the name is no longer announced, /readyz and peertunnel_expose_target_up say so, and the
 * target is probed with a bounded backoff until it accepts again.
 *
 * Streams are bounded per peer and in total (stream-limits.ts), before any target socket is
 * opened; an optional idle timeout closes connections that carry nothing.
 */
import { connect, type Socket } from 'node:net';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import type { ExposeStatus } from '../../contracts/sidecar-status.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { ExposeConfig } from '../config/config.js';
import {
  serviceProtocol,
  serviceProtocolAck,
  TARGET_BUSY,
  TARGET_CONNECTED,
  TARGET_FORBIDDEN,
  TARGET_UNREACHABLE,
} from '../discovery/service-directory.js';
import type { Logger } from '../node/logger.js';
import type { TunnelTrust } from '../trust/node-trust.js';
import { meteredPipe } from './metered-pipe.js';
import { StreamLimiter as Limiter, type StreamLimiter, type StreamRefusal } from './stream-limits.js';
import { MAX_TUNNEL_STREAMS } from './stream-opener.js';

export interface ExposeHandlerInit {
  /** Give the local target this long to accept. @default 5000 */
  connectTimeoutMs?: number;
  /** First wait before probing a target that refused; doubles up to maxProbeBackoffMs. @default 250 */
  probeBackoffMs?: number;
  /** @default 5000 */
  maxProbeBackoffMs?: number;
}

export interface ExposeHandlerComponents {
  libp2p: Pick<Libp2p, 'handle' | 'unhandle'>;
  metrics: SidecarMetrics;
  logger: Logger;
  /** Shared by a node's exposes; unbounded (but for MAX_TUNNEL_STREAMS) when absent. */
  limiter?: StreamLimiter;
  /** Stops and resumes announcing the name while the target refuses. */
  directory?: { setAnnounced(name: string, on: boolean): void };
  /** Whether a peer may reach this expose (counted and logged there); everyone may when absent. */
  trust?: TunnelTrust;
}

class TargetError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TargetError';
  }
}

export class ExposeHandler {
  readonly config: ExposeConfig;
  readonly protocols: readonly string[];
  private readonly c: ExposeHandlerComponents;
  private readonly limiter: StreamLimiter;
  private readonly connectTimeoutMs: number;
  private readonly probeBackoffMs: number;
  private readonly maxProbeBackoffMs: number;
  private readonly sockets = new Set<Socket>();
  private served = 0;
  private targetFailures = 0;
  private up = true;
  private stopped = false;
  /** Stopped accepting (drain): the handler stays off even when the target comes back. */
  private draining = false;
  private probeTimer?: NodeJS.Timeout;
  private probeBackoff: number;
  private lastRefusalLog = 0;
  private refusalsUnlogged = 0;

  constructor(components: ExposeHandlerComponents, config: ExposeConfig, init: ExposeHandlerInit = {}) {
    this.c = components;
    this.config = config;
    this.protocols = [serviceProtocolAck(config.name), serviceProtocol(config.name)];
    this.limiter =
      components.limiter ?? new Limiter({ streams: MAX_TUNNEL_STREAMS, streamsPerPeer: MAX_TUNNEL_STREAMS });
    this.connectTimeoutMs = init.connectTimeoutMs ?? 5_000;
    this.probeBackoffMs = init.probeBackoffMs ?? 250;
    this.maxProbeBackoffMs = init.maxProbeBackoffMs ?? 5_000;
    this.probeBackoff = this.probeBackoffMs;
  }

  /** The target accepted its last connection or probe. */
  get targetUp(): boolean {
    return this.up;
  }

  async start(): Promise<void> {
    this.c.metrics.exposeTargetUp.set({ service: this.config.name }, 1);
    await this.register();
    this.c.logger.info(
      { event: 'service_exposed', service: this.config.name, host: this.config.host, port: this.config.port },
      'service exposed',
    );
  }

  /**
   * No new streams (the protocols are no longer handled: a forwarder's open is refused and it tries
   * another provider; identify tells peers the name is gone); streams already served go on.
   */
  async stopAccepting(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    clearTimeout(this.probeTimer);
    await this.c.libp2p.unhandle([...this.protocols]);
  }

  /** Connections to the target still open. */
  get active(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.stopAccepting();
    for (const s of this.sockets) s.destroy();
  }

  private register(): Promise<void> {
    return this.c.libp2p.handle(
      [...this.protocols],
      (stream, connection) => {
        this.serve(stream, connection).catch((err: unknown) => {
          this.c.logger.error({ event: 'expose_failed', service: this.config.name, err }, 'expose failed');
          stream.abort(err instanceof Error ? err : new Error(String(err)));
        });
      },
      {
        // Our own per-peer and total limits apply first (serve); this only keeps libp2p's
        // per-connection default of 32 from refusing a busy forwarder.
        maxInboundStreams: MAX_TUNNEL_STREAMS,
        maxOutboundStreams: MAX_TUNNEL_STREAMS,
        runOnLimitedConnection: true,
      },
    );
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const acks = stream.protocol === this.protocols[0];
    const peer = connection.remotePeer.toString();
    if (this.c.trust !== undefined) {
      // Nothing of the peer's is read, and no slot or target socket taken, before the check.
      if (stream.readStatus === 'readable') stream.pause();
      if ((await this.c.trust.checkClient(peer, this.config.name)) !== undefined) {
        if (acks) await sendStatus(stream, TARGET_FORBIDDEN);
        else stream.abort(new Error('peer not allowed'));
        return;
      }
      this.c.trust.track(stream, 'expose', peer, this.config.name);
    }
    const refusal = this.limiter.acquire(peer);
    if (refusal !== undefined) return this.refuse(stream, acks, peer, refusal);
    try {
      await this.serveWithin(stream, acks);
    } finally {
      this.limiter.release(peer);
    }
  }

  private async serveWithin(stream: Stream, acks: boolean): Promise<void> {
    const service = this.config.name;
    // Hold the remote's bytes (yamux stops granting window) until the target has accepted.
    if (stream.readStatus === 'readable') stream.pause();
    let socket: Socket;
    try {
      socket = await this.connectTarget();
    } catch (err) {
      this.targetFailures++;
      this.c.metrics.streamsFailed.inc({ service, side: 'expose', reason: 'target_unreachable' });
      this.c.logger.warn(
        { event: 'target_unreachable', service, host: this.config.host, port: this.config.port, err },
        'exposed target refused the connection',
      );
      this.targetDown();
      if (acks) await sendStatus(stream, TARGET_UNREACHABLE);
      else stream.abort(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // The stream may be gone by now: its connection closed, or the forwarder stopped waiting for
    // the status byte. Its 'close' has fired already, so nothing else would end the target socket
    // (a target that waits for its client's first byte keeps it, and the slot, for ever).
    if (stream.status !== 'open') {
      socket.resetAndDestroy();
      this.c.metrics.streamsFailed.inc({
        service,
        side: 'expose',
        reason: stream.status === 'reset' ? 'reset_by_peer' : 'local_error',
      });
      return;
    }
    this.served++;
    try {
      if (acks && !stream.send(Uint8Array.of(TARGET_CONNECTED)))
        await stream.onDrain().catch(() => undefined);
      const idle = this.config.idleTimeoutSeconds;
      const idleAbort = new AbortController();
      if (idle > 0) {
        socket.setTimeout(idle * 1_000, () => {
          this.c.metrics.streamsFailed.inc({ service, side: 'expose', reason: 'timeout' });
          this.c.logger.info(
            { event: 'stream_idle_closed', service, idleSeconds: idle },
            'idle connection closed',
          );
          idleAbort.abort(new Error(`idle for ${idle} s`));
        });
      }
      await meteredPipe(socket, stream, this.c.metrics, service, 'expose', idleAbort.signal);
    } finally {
      // The pipe ends only once the socket closed; this is for a throw before it took the socket.
      if (!socket.destroyed) socket.resetAndDestroy();
    }
  }

  private async refuse(stream: Stream, acks: boolean, peer: string, reason: StreamRefusal): Promise<void> {
    this.c.metrics.streamsRefused.inc({ reason });
    // An attacker's thousands of refusals must not flood the log: one line a second, with a count.
    const now = Date.now();
    if (now - this.lastRefusalLog >= 1_000) {
      this.c.logger.warn(
        {
          event: 'stream_refused',
          service: this.config.name,
          peer,
          reason,
          held: this.limiter.heldBy(peer),
          active: this.limiter.active,
          suppressed: this.refusalsUnlogged,
        },
        'stream refused: limit reached',
      );
      this.lastRefusalLog = now;
      this.refusalsUnlogged = 0;
    } else this.refusalsUnlogged++;
    if (acks) await sendStatus(stream, TARGET_BUSY);
    else stream.abort(new Error(`stream limit reached (${reason})`));
  }

  private connectTarget(): Promise<Socket> {
    const socket = connect({
      host: this.config.host,
      port: this.config.port,
      allowHalfOpen: true,
      noDelay: true,
    });
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    return new Promise<Socket>((resolve, reject) => {
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new TargetError(err.message, { cause: err }));
      };
      const timer = setTimeout(
        () => fail(new Error(`connect timeout after ${this.connectTimeoutMs} ms`)),
        this.connectTimeoutMs,
      );
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(socket);
      });
      socket.once('error', fail);
    });
  }

  /** The target refused: take the name out of service and probe until it accepts again. */
  private targetDown(): void {
    if (!this.up || this.stopped || this.draining) return;
    this.up = false;
    const service = this.config.name;
    this.c.metrics.exposeTargetUp.set({ service }, 0);
    this.c.directory?.setAnnounced(service, false);
    this.c.libp2p.unhandle([...this.protocols]).catch(() => undefined);
    this.c.logger.warn(
      { event: 'target_down', service, host: this.config.host, port: this.config.port },
      'exposed target refuses: no longer announced, probing it',
    );
    this.probeBackoff = this.probeBackoffMs;
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.stopped || this.draining) return;
    this.probeTimer = setTimeout(() => void this.probe(), this.probeBackoff);
    this.probeTimer.unref();
  }

  private async probe(): Promise<void> {
    try {
      const socket = await this.connectTarget();
      socket.destroy();
    } catch {
      this.probeBackoff = Math.min(this.maxProbeBackoffMs, this.probeBackoff * 2);
      return this.scheduleProbe();
    }
    if (this.stopped || this.draining) return;
    await this.register();
    this.up = true;
    const service = this.config.name;
    this.c.metrics.exposeTargetUp.set({ service }, 1);
    this.c.directory?.setAnnounced(service, true);
    this.c.logger.info({ event: 'target_up', service }, 'exposed target accepts again: announced');
  }

  status(): ExposeStatus {
    return {
      name: this.config.name,
      host: this.config.host,
      port: this.config.port,
      protocol: this.protocols[1] ?? '',
      targetUp: this.up,
      activeConnections: this.sockets.size,
      servedConnections: this.served,
      targetFailures: this.targetFailures,
    };
  }
}

/** Sends the status byte and closes; a peer that is gone already is no matter. */
async function sendStatus(stream: Stream, status: number): Promise<void> {
  try {
    stream.send(Uint8Array.of(status));
    await stream.close({ signal: AbortSignal.timeout(2_000) });
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)));
  }
}
