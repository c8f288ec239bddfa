/**
 * Small TCP and port-mapping helpers on top of the tools in tools/, for lab tests: a server that
 * reports how it saw each client, a client probe, and a port-mapping session through the product's
 * port mapper library.
 */
import type { ChildProcess } from 'node:child_process';
import { LabError } from './errors.js';
import { LineReader, waitForExit } from './exec.js';
import { type LabHost, type LabNode, labTool } from './lab.js';

export interface TcpServerHandle {
  readonly child: ChildProcess;
  /** `ip:port` it listens on. */
  readonly address: string;
  readonly lines: LineReader;
  stop(): Promise<void>;
}

/** Start tools/tcp-server.ts on `node` (bound to `ip`, default all addresses) and wait until it listens. */
export async function startTcpServer(node: LabNode, port: number, ip = '0.0.0.0'): Promise<TcpServerHandle> {
  const child = node.spawnNode(labTool('tcp-server.ts'), [ip, String(port)]);
  const lines = new LineReader(child, `tcp-server on ${node.name}`);
  const ready = await lines.next((l) => l.startsWith('listening '), 10_000, 'listening');
  return {
    child,
    address: ready.slice('listening '.length),
    lines,
    async stop() {
      child.kill('SIGTERM');
      if (!(await waitForExit(child, 2_000))) {
        child.kill('SIGKILL');
        await waitForExit(child, 2_000);
      }
    },
  };
}

export interface ProbeResult {
  readonly target: string;
  readonly ok: boolean;
  /** The client's own address:port. */
  readonly local?: string;
  /** The address:port the server saw: after NAT, the mapping. */
  readonly observed?: string;
  /** Error code when not ok, e.g. ETIMEDOUT (dropped by a NAT) or ECONNREFUSED. */
  readonly error?: string;
}

export interface ProbeOptions {
  /** Connect every probe from this local port. */
  readonly localPort?: number;
  /** Per connection (connect + first line + echo). Default 3000 ms. */
  readonly timeoutMs?: number;
}

/** Run tools/tcp-client.ts on `node` against `targets` (kept open together); one result per target. */
export async function tcpProbe(
  node: LabNode,
  targets: readonly string[],
  options: ProbeOptions = {},
): Promise<ProbeResult[]> {
  const timeoutMs = options.timeoutMs ?? 3_000;
  const args = [
    '--disable-warning=ExperimentalWarning',
    labTool('tcp-client.ts'),
    '--timeout',
    String(timeoutMs),
  ];
  if (options.localPort !== undefined) {
    args.push('--local-port', String(options.localPort));
  }
  const result = await node.exec(process.execPath, [...args, ...targets], {
    timeoutMs: timeoutMs * targets.length + 10_000,
  });
  if (result.code !== 0) {
    throw new LabError(`tcp-client on ${node.name} exited ${result.code}: ${result.stderr}`);
  }
  const results = result.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as ProbeResult);
  if (results.length !== targets.length) {
    throw new LabError(
      `tcp-client on ${node.name} reported ${results.length} of ${targets.length}: ${result.stdout}`,
    );
  }
  return results;
}

export interface PortMapping {
  readonly externalHost: string;
  readonly externalPort: number;
  readonly internalHost: string;
  readonly internalPort: number;
  readonly protocol: 'TCP' | 'UDP';
}

export interface PortMapperSession {
  readonly mapping: PortMapping;
  readonly lines: LineReader;
  /** Remove the mapping (the mapper keeps running). */
  unmap(): Promise<void>;
  /** Stop the mapper: the library removes whatever it still holds, then the process exits. */
  stop(): Promise<void>;
}

export interface PortMapperOptions {
  readonly protocol: 'upnp' | 'pmp';
  /** The pod host's port to map (TCP). */
  readonly port: number;
  readonly externalPort?: number;
  /** Per operation. Default 15 s. */
  readonly timeoutMs?: number;
}

interface MapperEvent {
  event: string;
  name?: string;
  message?: string;
}

/** Map a TCP port of `host` on its site's router, with UPnP-IGD or NAT-PMP, via tools/portmap.ts. */
export async function startPortMapper(host: LabHost, options: PortMapperOptions): Promise<PortMapperSession> {
  const timeoutMs = options.timeoutMs ?? 15_000;
  const args = [
    options.protocol,
    '--internal-host',
    host.ip,
    '--port',
    String(options.port),
    '--gateway',
    host.gateway,
    '--timeout',
    String(timeoutMs),
  ];
  if (options.externalPort !== undefined) {
    args.push('--external-port', String(options.externalPort));
  }
  const child = host.spawnNode(labTool('portmap.ts'), args);
  const lines = new LineReader(child, `portmap ${options.protocol} on ${host.name}`);
  const expect = async (event: string): Promise<MapperEvent & Record<string, unknown>> => {
    const got = await lines.nextJson<MapperEvent & Record<string, unknown>>(
      (e) => e.event === event || e.event === 'error',
      timeoutMs + 5_000,
      event,
    );
    if (got.event === 'error') {
      throw new LabError(`port mapper (${options.protocol}) on ${host.name}: ${got.name}: ${got.message}`);
    }
    return got;
  };
  const mapped = await expect('mapped');
  const mapping: PortMapping = {
    externalHost: String(mapped.externalHost),
    externalPort: Number(mapped.externalPort),
    internalHost: String(mapped.internalHost),
    internalPort: Number(mapped.internalPort),
    protocol: mapped.protocol === 'UDP' ? 'UDP' : 'TCP',
  };
  return {
    mapping,
    lines,
    async unmap() {
      child.stdin?.write('unmap\n');
      await expect('unmapped');
    },
    async stop() {
      child.stdin?.end('stop\n');
      await expect('stopped');
      await waitForExit(child, 5_000);
    },
  };
}
