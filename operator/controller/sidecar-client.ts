/**
 * Reads the sidecars' `/status`. The operator serves the webhook and renews the Lease in the same
 * process, so a sidecar (anyone who can create a pod) must not be able to stall or bloat it: the
 * poller talks only to the pod's own IP at the sidecar's admin port, follows no redirect, reads at
 * most MAX_STATUS_BYTES and gives up at a deadline covering connect, headers and body.
 *
 * Where a sidecar is reached is a function (`AdminAddressResolver`), so tests whose pod runner
 * runs sidecars on 127.0.0.1 can say so: with `trustAnnotation` the pod's
 * `peertunnel.io/admin-address` annotation may name the port, on the pod's own IP or on loopback
 * (where test runners forward admin ports), never another host. It is off by default.
 */
import { request } from 'node:http';
import { isIP } from 'node:net';
import type { V1Pod } from '@kubernetes/client-node';
import { parseSidecarReport, type SidecarReport } from '../../contracts/sidecar-status.js';
import type { Logger } from '../../sidecar/node/logger.js';
import { ADMIN_PORT_NAME } from '../inject/render.js';
import type { OperatorMetrics } from '../metrics.js';

export const ADMIN_ADDRESS_ANNOTATION = 'peertunnel.io/admin-address';

/** A /status is a few KiB per peer and forward; this is far above any real one. */
export const MAX_STATUS_BYTES = 256 * 1024;
export const STATUS_TIMEOUT_MS = 2_000;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1']);

export interface AdminAddress {
  host: string;
  port: number;
}

/** Where a pod's sidecar admin server is, or undefined when it cannot be reached. */
export type AdminAddressResolver = (pod: V1Pod) => AdminAddress | undefined;

function parseHostPort(s: string): AdminAddress | undefined {
  const i = s.lastIndexOf(':');
  if (i <= 0) return undefined;
  const host = s.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(s.slice(i + 1));
  if (isIP(host) === 0 || !Number.isInteger(port) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

export function defaultAdminAddress(
  containerName: string,
  fallbackPort: number,
  trustAnnotation: boolean,
): AdminAddressResolver {
  return (pod) => {
    const ip = pod.status?.podIP;
    if (ip === undefined || isIP(ip) === 0) return undefined;
    if (trustAnnotation) {
      const a = parseHostPort(pod.metadata?.annotations?.[ADMIN_ADDRESS_ANNOTATION] ?? '');
      // The port may come from the annotation; the host only when it is the pod's own IP, or
      // loopback: test pod runners forward each admin port to 127.0.0.1 on the operator's host.
      if (a !== undefined && (a.host === ip || LOOPBACK_HOSTS.has(a.host))) return a;
    }
    const sidecar = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find(
      (c) => c.name === containerName,
    );
    const port = sidecar?.ports?.find((p) => p.name === ADMIN_PORT_NAME)?.containerPort ?? fallbackPort;
    return { host: ip, port };
  };
}

/** Why a /status read failed; a fixed set (a metric label). */
export type StatusPollFailure =
  | 'unreachable'
  | 'timeout'
  | 'redirect'
  | 'too_large'
  | 'http_status'
  | 'bad_body';

export class StatusPollError extends Error {
  constructor(
    readonly reason: StatusPollFailure,
    message: string,
  ) {
    super(message);
    this.name = 'StatusPollError';
  }
}

export interface StatusPollOptions {
  /** Sent as `Authorization: Bearer`; sidecars off the operator's host answer /status only with it. */
  token?: string;
  timeoutMs?: number;
  maxBytes?: number;
}

/**
 * GET http://host:port/status on a connection of its own; resolves with the parsed JSON, rejects
 * with StatusPollError naming the cause.
 */
export function pollStatus(address: AdminAddress, o: StatusPollOptions = {}): Promise<unknown> {
  const timeoutMs = o.timeoutMs ?? STATUS_TIMEOUT_MS;
  const maxBytes = o.maxBytes ?? MAX_STATUS_BYTES;
  const where = `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = request({
      host: address.host,
      port: address.port,
      path: '/status',
      method: 'GET',
      // A fresh socket each time: nothing a sidecar does lingers in a shared pool.
      agent: false,
      headers: { accept: 'application/json', ...(o.token ? { authorization: `Bearer ${o.token}` } : {}) },
    });
    const fail = (reason: StatusPollFailure, message: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new StatusPollError(reason, `GET http://${where}/status: ${message}`));
    };
    const timer = setTimeout(() => fail('timeout', `no complete answer within ${timeoutMs} ms`), timeoutMs);
    req.on('error', (err) => fail('unreachable', err.message));
    req.on('response', (res) => {
      const code = res.statusCode ?? 0;
      if (code >= 300 && code < 400) {
        fail('redirect', `answered ${code} (to ${String(res.headers.location)}); redirects are not followed`);
        return;
      }
      if (code !== 200) {
        fail('http_status', `answered ${code}`);
        return;
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > maxBytes) {
        fail('too_large', `body of ${declared} bytes is over the ${maxBytes}-byte cap`);
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) fail('too_large', `body over the ${maxBytes}-byte cap; stopped reading`);
        else chunks.push(c);
      });
      res.on('error', (err) => fail('unreachable', err.message));
      res.on('end', () => {
        if (settled) return;
        try {
          const body: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          settled = true;
          clearTimeout(timer);
          resolve(body);
        } catch {
          fail('bad_body', 'body is not JSON');
        }
      });
    });
    req.end();
  });
}

export type SidecarStatusFetcher = (pod: V1Pod) => Promise<SidecarReport | undefined>;

export interface HttpSidecarStatusInit {
  resolve: AdminAddressResolver;
  /** The status token, read when a poll starts (it is loaded after the poller is built). */
  token: () => string | undefined;
  metrics: OperatorMetrics;
  logger: Logger;
  timeoutMs?: number;
  maxBytes?: number;
}

/**
 * `pollStatus` per pod; undefined when unreachable or unreadable (counted by reason, logged). A JSON
 * body that breaks the status contract throws its ContractError: the caller counts and logs it.
 */
export function httpSidecarStatus(init: HttpSidecarStatusInit): SidecarStatusFetcher {
  return async (pod) => {
    const address = init.resolve(pod);
    if (address === undefined) return undefined;
    let body: unknown;
    try {
      body = await pollStatus(address, {
        token: init.token(),
        timeoutMs: init.timeoutMs,
        maxBytes: init.maxBytes,
      });
    } catch (err) {
      const reason = err instanceof StatusPollError ? err.reason : 'unreachable';
      init.metrics.statusPollFailures.inc({ reason });
      // A redirect or an oversized body is a sidecar misbehaving; unreachable is a pod starting.
      const level = reason === 'redirect' || reason === 'too_large' ? 'warn' : 'debug';
      init.logger[level](
        {
          event: 'status_poll_failed',
          reason,
          pod: `${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`,
          err: String(err),
        },
        'sidecar /status not read',
      );
      return undefined;
    }
    return parseSidecarReport(body);
  };
}
