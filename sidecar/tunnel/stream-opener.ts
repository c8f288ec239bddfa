/**
 * Opens one tunnel stream for a forward: tries the pool's providers in its order (connected ones
 * first, then the first unconnected one to connect, then those in backoff), negotiates the
 * acknowledged protocol before the plain one, waits for the exposer's "target connected" byte,
 * and opens once more on a connection that replaced the one a stream failed on.
 */
import type { Connection, Stream, StreamMessageEvent } from '@libp2p/interface';
import type { SidecarMetrics } from '../admin/metrics.js';
import {
  type ServiceDirectory,
  serviceProtocol,
  serviceProtocolAck,
  TARGET_BUSY,
  TARGET_CONNECTED,
  TARGET_FORBIDDEN,
} from '../discovery/service-directory.js';
import { NoProviderError } from '../node/errors.js';
import type { Logger } from '../node/logger.js';
import type { TunnelTrust } from '../trust/node-trust.js';
import { ProviderDialError, type ProviderDialer } from './provider-dialer.js';
import type { ProviderPool } from './provider-pool.js';
import { ProviderUntrustedError, StreamOpenError } from './stream-open-error.js';

/** Waits between tries while every provider is at its limit for this node. */
const BUSY_WAIT_MIN_MS = 25;
const BUSY_WAIT_MAX_MS = 400;

/** Outbound stream limit per connection for our protocols (libp2p's default of 64 is far too low). */
export const MAX_TUNNEL_STREAMS = 100_000;

export interface StreamOpenerComponents {
  directory: Pick<ServiceDirectory, 'pool' | 'waitForProvider' | 'waitForNewProvider'>;
  dialer: ProviderDialer;
  metrics: SidecarMetrics;
  logger: Logger;
  /** Whether a provider may serve the name; everyone may when absent. */
  trust?: TunnelTrust;
}

export interface StreamOpenerTimeouts {
  streamTimeoutMs: number;
  providerWaitMs: number;
}

export class StreamOpener {
  private readonly protocol: string;
  private readonly protocols: string[];

  constructor(
    private readonly c: StreamOpenerComponents,
    private readonly service: string,
    private readonly t: StreamOpenerTimeouts,
  ) {
    this.protocol = serviceProtocol(service);
    // The acknowledged version first; kubo's `ipfs p2p` and older nodes answer only the plain one.
    this.protocols = [serviceProtocolAck(service), this.protocol];
  }

  /** One stream to a provider of the name; waits (bounded) while every provider is at its limit. */
  async open(): Promise<Stream> {
    // Every provider at its limit for this node (this peer's share of its streams in use): wait
    // for a slot, bounded, rather than reset a client that a moment later would have fitted.
    const deadline = Date.now() + this.t.streamTimeoutMs;
    for (let wait = BUSY_WAIT_MIN_MS; ; wait = Math.min(wait * 2, BUSY_WAIT_MAX_MS)) {
      try {
        return await this.openOnce();
      } catch (err) {
        const busy = err instanceof StreamOpenError && err.reason === 'provider_busy';
        if (!busy || Date.now() + wait > deadline) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  /**
   * Tries providers until one gives a stream: connected ones in turn first, then (none left) the
   * first of the unconnected ones to connect, then those in backoff. Healthy providers without a
   * connection are dialled in the background meanwhile, so a dead pod's record or a provider that
   * closed its connection (it stopped) costs no client a dial while a connected replica is left.
   */
  private async openOnce(): Promise<Stream> {
    const pool = this.c.directory.pool(this.service);
    if (pool === undefined) throw new NoProviderError(this.service, 'not a forwarded service');
    if (pool.size === 0 && !(await this.c.directory.waitForProvider(this.service, this.t.providerWaitMs))) {
      throw new NoProviderError(this.service, 'no provider found in the network');
    }
    const selection = pool.select(Date.now(), (peer) => this.c.dialer.isConnected(peer));
    for (const peer of selection.unconnected) this.c.dialer.connectInBackground(peer);
    let last: unknown;
    const tried = new Set<string>();
    const attempt = async (peer: string): Promise<Stream | undefined> => {
      tried.add(peer);
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
      const peer = await this.c.dialer.firstConnected(dialling, (err) => {
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
    // Every provider it knew failed: one lookup for one it has not tried (a replica it has not
    // heard of yet) before the client is given up. A rolling update can leave a forwarder knowing
    // only the replica that is restarting.
    for (const peer of await this.c.directory.waitForNewProvider(
      this.service,
      tried,
      this.t.providerWaitMs,
    )) {
      const stream = await attempt(peer);
      if (stream !== undefined) return stream;
    }
    if (last instanceof StreamOpenError) throw last;
    throw new NoProviderError(this.service, 'every known provider failed');
  }

  private providerFailed(pool: ProviderPool, peer: string, err: unknown): void {
    if (err instanceof ProviderDialError) {
      // connectionTo counted it in the pool (once per dial, however many connections waited).
    } else if (err instanceof StreamOpenError && err.reason === 'provider_busy') {
      // At its limit for this node, not broken: no backoff (open() waits for a slot).
    } else if (err instanceof ProviderUntrustedError) {
      // Refused for the name for good (counted and logged by the trust): never tried again.
      pool.remove(peer);
      this.c.metrics.providers.set({ service: this.service }, pool.size);
    } else pool.failed(peer, Date.now());
    // A refusal ('refused': the name is not handled) backs off like any failure rather than
    // dropping the provider: a draining exposer refuses for the seconds before it comes back under
    // the same peer ID, and a forgotten one would be missed until the next lookup, leaving a rolling
    // update one provider short. One that stopped for good costs a try per backoff until its record
    // expires.
    this.c.logger.info(
      {
        event: 'provider_failed',
        service: this.service,
        peer,
        reason: err instanceof StreamOpenError ? err.reason : 'local_error',
      },
      'provider failed, trying the next',
    );
  }

  private async streamTo(peer: string): Promise<Stream> {
    const connection = await this.c.dialer.connectionTo(peer);
    const untrusted = await this.c.trust?.checkProvider(peer, this.service);
    if (untrusted !== undefined)
      throw new ProviderUntrustedError(`${peer} may not serve ${this.service}: ${untrusted}`);
    try {
      return await this.newStream(peer, connection);
    } catch (err) {
      // A relayed connection that a hole punch just replaced closes under a stream being opened
      // on it (seen in the e2e: "Unexpected EOF", a client's connection reset). Once more on the
      // connection that replaced it; a refusal or a timeout is the peer's answer, not the path's.
      const next = this.c.dialer.connection(peer);
      const replaced = next !== undefined && next !== connection;
      if (!(err instanceof StreamOpenError) || err.reason !== 'dial_failed' || !replaced) throw err;
      this.c.logger.debug(
        { event: 'stream_retried', service: this.service, peer, err },
        'stream open failed on a connection that was replaced, opening it on the new one',
      );
      return this.newStream(peer, next);
    }
  }

  private async newStream(peer: string, connection: Connection): Promise<Stream> {
    const stream = await this.negotiate(peer, connection);
    this.c.trust?.track(stream, 'forward', peer, this.service);
    if (stream.protocol !== this.protocols[0]) return stream;
    // The exposer's target connect timeout (5 s) comes first; this only bounds a silent peer.
    const status = await readStatus(stream, this.t.streamTimeoutMs + 1_000);
    if (status === TARGET_CONNECTED) return stream;
    stream.abort(new Error('exposer could not serve the stream'));
    if (status === TARGET_BUSY)
      throw new StreamOpenError('provider_busy', `${peer} serves as many streams as it may`);
    if (status === TARGET_FORBIDDEN)
      throw new StreamOpenError('unauthorized', `${peer} does not let this node reach ${this.service}`);
    if (status === 'timeout')
      throw new StreamOpenError('timeout', `${peer} did not say whether its target accepted`);
    throw new StreamOpenError('target_unreachable', `${peer}'s target did not accept`);
  }

  private async negotiate(peer: string, connection: Connection): Promise<Stream> {
    try {
      return await connection.newStream(this.protocols, {
        signal: AbortSignal.timeout(this.t.streamTimeoutMs),
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
