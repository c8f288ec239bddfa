/**
 * The API server's way to its nodes, as konnectivity gives it in clusters whose nodes the control
 * plane cannot route to: an HTTP CONNECT proxy on a unix socket, named in kube-apiserver's
 * `--egress-selector-config-file` for the `cluster` egress (kubelet calls: `kubectl logs`, `exec`,
 * `port-forward`; webhooks). Real nodes (real-node.ts) live in NAT-lab network namespaces the host
 * cannot reach; each registers its kubelet's `ip:port` with a unix socket that leads there, and
 * its pod network with a dialer that connects from inside its namespace (webhooks by Service, with
 * `--enable-aggregator-routing`, and the pod proxy go to pod addresses). Any other target (a
 * webhook URL on 127.0.0.1) is dialled directly, as without a proxy.
 */
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { ipToInt } from '../lab/addresses.js';

/** Request head bound: a CONNECT line and a few headers, never more. */
const MAX_HEAD_BYTES = 8 * 1024;
/** Simultaneous tunnels; an exec or a log follow holds one each. */
const MAX_TUNNELS = 256;

export interface EgressProxy {
  /** The unix socket kube-apiserver dials. */
  readonly socketPath: string;
  /** The egress selector configuration file to pass to kube-apiserver. */
  readonly configPath: string;
  /** Tunnels to `target` (`ip:port`) go to this unix socket from now on. */
  route(target: string, unixPath: string): void;
  unroute(target: string): void;
  /** Tunnels to an address in `cidr` (IPv4) are made by `dial` from now on. */
  routeNetwork(cidr: string, dial: NetworkDialer): void;
  unrouteNetwork(cidr: string): void;
  close(): Promise<void>;
}

/** Connects to `host:port` from wherever the network is; `connected` once bytes may flow. */
export type NetworkDialer = (host: string, port: number) => { stream: Duplex; connected: Promise<void> };

function inCidr(ip: string, cidr: string): boolean {
  const [base = '', bits = '32'] = cidr.split('/');
  try {
    const size = 2 ** (32 - Number(bits));
    return Math.floor(ipToInt(ip) / size) === Math.floor(ipToInt(base) / size);
  } catch {
    return false;
  }
}

export function egressSelectorConfig(socketPath: string): string {
  return JSON.stringify({
    apiVersion: 'apiserver.k8s.io/v1beta1',
    kind: 'EgressSelectorConfiguration',
    egressSelections: [
      {
        name: 'cluster',
        connection: { proxyProtocol: 'HTTPConnect', transport: { uds: { udsName: socketPath } } },
      },
    ],
  });
}

/** Starts the proxy on `<dir>/egress.sock` and writes `<dir>/egress-selector.json`. */
export async function startEgressProxy(
  dir: string,
  writeFile: (path: string, text: string) => Promise<void>,
): Promise<EgressProxy> {
  const socketPath = join(dir, 'egress.sock');
  const configPath = join(dir, 'egress-selector.json');
  const routes = new Map<string, string>();
  const networks = new Map<string, NetworkDialer>();
  const open = new Set<Duplex>();

  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    if (open.size >= MAX_TUNNELS * 2) {
      client.destroy();
      return;
    }
    open.add(client);
    client.once('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) {
        if (head.length > MAX_HEAD_BYTES) client.destroy();
        return;
      }
      client.off('data', onData);
      client.pause();
      const line = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const rest = head.subarray(end + 4);
      const m = /^CONNECT (\S+) HTTP\/1\.[01]$/.exec(line);
      if (!m?.[1]) {
        client.end('HTTP/1.1 405 Method Not Allowed\r\n\r\n');
        return;
      }
      const target = m[1];
      const colon = target.lastIndexOf(':');
      const host = target.slice(0, colon).replace(/^\[|\]$/g, '');
      const port = Number(target.slice(colon + 1));
      const via = routes.get(target);
      const network = [...networks].find(([cidr]) => inCidr(host, cidr))?.[1];
      let upstream: Duplex;
      let connected: Promise<void>;
      if (network !== undefined) {
        ({ stream: upstream, connected } = network(host, port));
      } else {
        const socket = via
          ? connect({ path: via, allowHalfOpen: true })
          : connect({ host, port, allowHalfOpen: true });
        upstream = socket;
        connected = new Promise((resolve) => socket.once('connect', () => resolve()));
      }
      open.add(upstream);
      upstream.once('close', () => open.delete(upstream));
      let established = false;
      void connected.then(() => {
        if (upstream.destroyed) return;
        established = true;
        client.write('HTTP/1.1 200 Connection established\r\n\r\n');
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
      upstream.on('error', (err) => {
        if (!established) client.end(`HTTP/1.1 502 Bad Gateway\r\n\r\n${err.message}`);
        else client.destroy();
      });
      upstream.once('close', () => {
        if (!established) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      });
      client.on('error', () => upstream.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  await writeFile(configPath, egressSelectorConfig(socketPath));
  return {
    socketPath,
    configPath,
    route: (target, unixPath) => {
      routes.set(target, unixPath);
    },
    unroute: (target) => {
      routes.delete(target);
    },
    routeNetwork: (cidr, dial) => {
      networks.set(cidr, dial);
    },
    unrouteNetwork: (cidr) => {
      networks.delete(cidr);
    },
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
