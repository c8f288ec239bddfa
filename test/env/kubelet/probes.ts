/**
 * Container probes as a kubelet runs them, against the pod's own network: httpGet and tcpSocket go
 * through a NamespaceSocket (socat inside the pod's namespace, connecting to the pod IP as the
 * kubelet would), exec runs in the container. The timing (period, thresholds) lives in the pod
 * worker; this module answers one probe.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import type { V1Container, V1Probe } from '@kubernetes/client-node';

export interface ProbeTarget {
  /** A unix socket that reaches `<pod IP>:<port>` inside the pod's namespace. */
  socketFor(port: number): Promise<string>;
  /** Runs argv in the container; exit code 0 is success. */
  exec(argv: readonly string[], timeoutMs: number): Promise<number | null>;
}

export interface ProbeResult {
  readonly ok: boolean;
  readonly message: string;
}

/** A named port (`pt-admin`) or a number, from the container's ports. */
export function resolvePort(container: V1Container, port: number | string | undefined): number {
  if (typeof port === 'number') return port;
  if (port !== undefined && /^\d+$/.test(port)) return Number(port);
  const named = container.ports?.find((p) => p.name === port);
  if (named === undefined) throw new Error(`container ${container.name} has no port named ${String(port)}`);
  return named.containerPort;
}

function httpGet(
  socketPath: string,
  path: string,
  https: boolean,
  timeoutMs: number,
  host: string,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const request = https ? httpsRequest : httpRequest;
    const req = request(
      {
        socketPath,
        path,
        method: 'GET',
        headers: { host, 'user-agent': 'kube-probe/1.36', accept: '*/*' },
        timeout: timeoutMs,
        rejectUnauthorized: false,
      },
      (res) => {
        res.resume();
        const code = res.statusCode ?? 0;
        // A kubelet counts 200-399 as success.
        resolve({ ok: code >= 200 && code < 400, message: `HTTP probe failed with statuscode: ${code}` });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (err) => resolve({ ok: false, message: `Get "${path}": ${err.message}` }));
    req.end();
  });
}

/**
 * tcpSocket through socat: the unix connect always succeeds, and socat closes the connection at
 * once when its TCP connect fails; a connection still open after a short while is a success.
 */
function tcpOpen(socketPath: string, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const settle = (ok: boolean, message: string): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ ok, message });
    };
    const timer = setTimeout(() => settle(true, ''), Math.min(300, timeoutMs));
    s.on('data', () => settle(true, ''));
    s.on('close', () => settle(false, 'dial tcp: connection refused'));
    s.on('error', (err) => settle(false, err.message));
  });
}

export async function runProbe(
  probe: V1Probe,
  container: V1Container,
  podIP: string,
  target: ProbeTarget,
): Promise<ProbeResult> {
  const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
  try {
    if (probe.httpGet !== undefined) {
      const port = resolvePort(container, probe.httpGet.port as number | string);
      return await httpGet(
        await target.socketFor(port),
        probe.httpGet.path ?? '/',
        probe.httpGet.scheme === 'HTTPS',
        timeoutMs,
        `${probe.httpGet.host ?? podIP}:${port}`,
      );
    }
    if (probe.tcpSocket !== undefined) {
      const port = resolvePort(container, probe.tcpSocket.port as number | string);
      return await tcpOpen(await target.socketFor(port), timeoutMs);
    }
    if (probe.exec?.command !== undefined) {
      const code = await target.exec(probe.exec.command, timeoutMs);
      return { ok: code === 0, message: `command exited with ${String(code)}` };
    }
    return { ok: false, message: 'unsupported probe (grpc?)' };
  } catch (err) {
    return { ok: false, message: err instanceof Error ? err.message : String(err) };
  }
}
