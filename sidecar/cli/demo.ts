/**
 * `peertunnel demo`: a relay and two nodes on 127.0.0.1 in one process, a small built-in HTTP
 * service exposed on one node and forwarded on the other, traffic sent through, and what
 * happened printed. No cluster, no root.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { parseConfig } from '../config/config.js';
import { generateSwarmKey } from '../config/swarm-key.js';
import { silentLogger } from '../node/logger.js';
import { PeerNode } from '../node/peer-node.js';

export interface DemoOptions {
  /** Stop after this many seconds; run until Ctrl-C when absent. */
  durationSeconds?: number | undefined;
  /** Local port of the forward; a free one when absent. */
  forwardPort?: number | undefined;
  out?: (line: string) => void;
}

const KEY_ENV = 'PEERTUNNEL_DEMO_SWARM_KEY';

/** The built-in service: `/` says hello, `/bytes/N` streams N random bytes, POST echoes a sha256. */
function startService(): Promise<{ server: Server; port: number }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    const bytes = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (chunk: Buffer) => {
        n += chunk.length;
        hash.update(chunk);
      });
      req.on('end', () => res.end(JSON.stringify({ bytes: n, sha256: hash.digest('hex') })));
      return;
    }
    if (bytes !== null) {
      res.setHeader('content-type', 'application/octet-stream');
      res.end(randomBytes(Math.min(Number(bytes[1]), 64 * 1024 * 1024)));
      return;
    }
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from the exposing node (request ${hits}), via PeerTunnel\n`);
  });
  return new Promise((resolve) =>
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
    }),
  );
}

/** A free local port for the forward (config takes no port 0: a forward's port is a contract). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createTcpServer();
    probe.once('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0 }, () => {
      const addr = probe.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export async function runDemo(options: DemoOptions = {}): Promise<number> {
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const env = { ...process.env, [KEY_ENV]: generateSwarmKey() };
  const logger = silentLogger();
  const base = { swarmKey: { env: KEY_ENV }, listen: ['/ip4/127.0.0.1/tcp/0'], log: { level: 'silent' } };
  const service = await startService();
  const nodes: PeerNode[] = [];
  const stopAll = async () => {
    for (const n of nodes.reverse()) await n.stop().catch(() => undefined);
    service.server.close();
  };
  try {
    out(
      'PeerTunnel demo: one relay/bootstrap node and two nodes on 127.0.0.1, one private network (fresh swarm key)',
    );
    const relay = await PeerNode.start({
      config: parseConfig({ ...base, role: 'relay', admin: { listen: '127.0.0.1:0' } }),
      logger,
      env,
    });
    nodes.push(relay);
    const bootstrap = relay.libp2p.getMultiaddrs().map((a) => a.toString());
    out(`  relay    ${relay.libp2p.peerId}  ${bootstrap[0] ?? ''}`);
    const exposer = await PeerNode.start({
      config: parseConfig({
        ...base,
        bootstrap,
        admin: { listen: '127.0.0.1:0' },
        expose: [{ name: 'demo-web', port: service.port }],
      }),
      logger,
      env,
    });
    nodes.push(exposer);
    out(
      `  node A   ${exposer.libp2p.peerId}  exposes "demo-web" -> 127.0.0.1:${service.port} (built-in HTTP service)`,
    );
    const forwarder = await PeerNode.start({
      config: parseConfig({
        ...base,
        bootstrap,
        admin: { listen: '127.0.0.1:0' },
        forward: [{ name: 'demo-web', localPort: options.forwardPort ?? (await freePort()) }],
      }),
      logger,
      env,
    });
    nodes.push(forwarder);
    const port = forwarder.forwards[0]?.port ?? 0;
    out(`  node B   ${forwarder.libp2p.peerId}  forwards 127.0.0.1:${port} -> "demo-web"`);

    const started = performance.now();
    const first = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(30_000) });
    out(
      `\nfirst request through the tunnel: ${first.status} in ${(performance.now() - started).toFixed(0)} ms (DHT lookup + connection + stream)`,
    );
    out(`  ${(await first.text()).trim()}`);

    const payload = randomBytes(32 * 1024 * 1024);
    const t0 = performance.now();
    const upload = await fetch(`http://127.0.0.1:${port}/`, {
      method: 'POST',
      body: payload,
      signal: AbortSignal.timeout(60_000),
    });
    const echoed = (await upload.json()) as { bytes: number; sha256: string };
    const intact = echoed.sha256 === createHash('sha256').update(payload).digest('hex');
    const secs = (performance.now() - t0) / 1000;
    out(
      `uploaded ${mib(payload.length)} in ${secs.toFixed(2)} s (${mib(payload.length / secs)}/s), sha256 ${intact ? 'matches' : 'DOES NOT MATCH'}`,
    );

    const lat: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await (await fetch(`http://127.0.0.1:${port}/`)).text();
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    out(`50 requests over HTTP keep-alive: p50 ${lat[24]?.toFixed(2)} ms, p99 ${lat[49]?.toFixed(2)} ms`);

    const path = forwarder.status().forwards[0]?.providers[0]?.path ?? 'unknown';
    out(
      `\npath from B to A: ${path} (on one machine every path is direct; the NAT lab shows relayed and hole-punched)`,
    );
    out('\nwhile it runs, try:');
    out(`  curl http://127.0.0.1:${port}/`);
    out(`  curl -s http://127.0.0.1:${port}/bytes/10000000 | wc -c`);
    out(`  curl -s http://127.0.0.1:${forwarder.admin?.port}/metrics | grep peertunnel_stream`);
    out(`  node dist/bin/peertunnel.js status --admin 127.0.0.1:${forwarder.admin?.port}`);
    out(
      options.durationSeconds === undefined
        ? '\nrunning until Ctrl-C'
        : `\nrunning for ${options.durationSeconds} s`,
    );

    await new Promise<void>((resolve) => {
      const report = setInterval(() => {
        const s = forwarder.status().forwards[0];
        out(
          `  B: ${s?.activeConnections ?? 0} open connection(s), ${s?.providers.length ?? 0} provider(s), path ${s?.providers[0]?.path ?? '-'}`,
        );
      }, 10_000);
      const finish = () => {
        clearInterval(report);
        resolve();
      };
      if (options.durationSeconds !== undefined) setTimeout(finish, options.durationSeconds * 1000).unref();
      process.once('SIGINT', finish);
      process.once('SIGTERM', finish);
    });
    const bytes = await forwarder.registry.getSingleMetricAsString('peertunnel_stream_bytes_total');
    out('\nbytes counted by node B (peertunnel_stream_bytes_total):');
    for (const line of bytes.split('\n')) if (!line.startsWith('#') && line.trim() !== '') out(`  ${line}`);
    out('done');
    return intact ? 0 : 1;
  } finally {
    await stopAll();
  }
}
