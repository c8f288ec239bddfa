/**
 * The kubo baseline of the bench: two kubo daemons on 127.0.0.1 in one private network (the
 * bench's swarm key), connected directly, with `ipfs p2p listen` on one (the "exposer", in front
 * of the bench's servers) and `ipfs p2p forward` on the other (the "forwarder", where the bench's
 * clients connect). That is the same shape as the tunnel column: client → forwarder → exposer →
 * server, over TCP + PSK + a security handshake + yamux.
 *
 * What kubo negotiates between two kubos is read from kubo's own libp2p metrics (the swarm's
 * connection counter carries security and muxer labels), not assumed.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type KuboConfig, type KuboNode, startKubo } from '../interop/kubo-daemon.js';

/**
 * Which security protocols the daemons offer. `default`: kubo's own order (TLS before noise);
 * `noise`: TLS switched off, so the pair runs noise like our nodes do.
 */
export type KuboSecurity = 'default' | 'noise';

export interface KuboPairOptions {
  bin: string;
  swarmKey: string;
  /** The servers behind `ipfs p2p listen`, by name; each gets a forward port on the other daemon. */
  targets: Record<string, number>;
  /** A free port on 127.0.0.1 for each forward. */
  freePort: () => Promise<number>;
  security?: KuboSecurity;
  /**
   * Keep go-libp2p's resource manager (kubo's default). Off by default: its per-peer inbound
   * stream limit scales with RAM (kubo: 256 + 128 per GiB of half the machine's memory; 1,762 on
   * a 24 GB machine, 512 on a 4 GB one), and every bench connection is one stream from the same
   * peer, so the 1,000 held connections would fail on a small machine for a reason our nodes do
   * not have (their yamux accepts 100,000 streams per connection and nothing caps per peer).
   * Where the limit is not reached it costs nothing measurable (conn/s alike with it on and off).
   */
  resourceManager?: boolean;
}

export interface KuboPair {
  forwarder: KuboNode;
  exposer: KuboNode;
  /** Local forward port per target name. */
  ports: Record<string, number>;
  /**
   * From spawning the forwarder's `ipfs daemon` until its forwards are in place (its repository
   * is made before, like a node's config file is written before).
   */
  startMs: number;
  /** `ipfs version --number`. */
  version: string;
  /** What the forwarder's connections run, e.g. "/tls/1.0.0 + /yamux/1.0.0" (after a first one). */
  negotiated(): Promise<string>;
  /** The config choices that differ from kubo's defaults, for the table's footnote. */
  settings: string[];
  stop(): Promise<void>;
}

const protocolOf = (name: string) => `/x/peertunnel-bench/${name}/1.0.0`;

/** The multiaddr kubo's API listens on, from $IPFS_PATH/api, as host:port. */
async function apiHostPort(node: KuboNode): Promise<string> {
  const ma = (await readFile(join(node.ipfsPath, 'api'), 'utf8')).trim();
  const m = /^\/ip4\/([^/]+)\/tcp\/(\d+)/.exec(ma);
  if (m === null) throw new Error(`kubo api address not understood: ${ma}`);
  return `${m[1]}:${m[2]}`;
}

/**
 * The security and muxer of the connections the daemon opened, from go-libp2p's swarm metric
 * `libp2p_swarm_connections_opened_total{security=...,muxer=...}` on kubo's API port.
 */
async function negotiatedOf(node: KuboNode): Promise<string> {
  const res = await fetch(`http://${await apiHostPort(node)}/debug/metrics/prometheus`);
  const text = await res.text();
  const seen = new Set<string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('libp2p_swarm_connections_opened_total{')) continue;
    const security = /security="([^"]*)"/.exec(line)?.[1];
    const muxer = /[{,]muxer="([^"]*)"/.exec(line)?.[1];
    if (security !== undefined && Number(line.split(' ').pop()) > 0)
      seen.add(`${security} + ${muxer ?? '?'}`);
  }
  return seen.size === 0 ? 'unknown (no swarm metrics)' : [...seen].join(', ');
}

export async function startKuboPair(opts: KuboPairOptions): Promise<KuboPair> {
  const settings: string[] = ['Experimental.Libp2pStreamMounting=true'];
  const security = opts.security ?? 'default';
  const configure = (cfg: KuboConfig) => {
    cfg.Swarm ??= {};
    const swarm = cfg.Swarm;
    if (security === 'noise') {
      const transports = (swarm.Transports ?? {}) as Record<string, unknown>;
      transports.Security = { TLS: false };
      swarm.Transports = transports;
    }
    if (opts.resourceManager !== true) swarm.ResourceMgr = { Enabled: false };
  };
  if (security === 'noise') settings.push('Swarm.Transports.Security.TLS=false');
  if (opts.resourceManager !== true) settings.push('Swarm.ResourceMgr.Enabled=false');

  const started: KuboNode[] = [];
  const stop = async () => {
    await Promise.allSettled(started.map((n) => n.stop()));
  };
  try {
    const base = { bin: opts.bin, swarmKey: opts.swarmKey, bootstrap: [], configure };
    const exposer = await startKubo(base);
    started.push(exposer);
    for (const [name, port] of Object.entries(opts.targets))
      await exposer.ipfs(['p2p', 'listen', protocolOf(name), `/ip4/127.0.0.1/tcp/${port}`]);
    const id = JSON.parse(await exposer.ipfs(['id'])) as { Addresses: string[] | null };
    const address = (id.Addresses ?? []).find((a) => a.startsWith('/ip4/127.0.0.1/tcp/'));
    if (address === undefined) throw new Error(`kubo exposer has no TCP address: ${JSON.stringify(id)}`);

    const forwarder = await startKubo(base);
    started.push(forwarder);
    const ready = performance.now();
    // The forward's target carries the exposer's address, so the forwarder dials it on the first
    // connection without a routing lookup; it is not connected before that.
    const ports: Record<string, number> = {};
    for (const name of Object.keys(opts.targets)) {
      const port = await opts.freePort();
      await forwarder.ipfs([
        'p2p',
        'forward',
        protocolOf(name),
        `/ip4/127.0.0.1/tcp/${port}`,
        `${address}/p2p/${exposer.peerId}`,
      ]);
      ports[name] = port;
    }
    const startMs = forwarder.startMs + (performance.now() - ready);
    return {
      forwarder,
      exposer,
      ports,
      startMs,
      version: (await forwarder.ipfs(['version', '--number'])).trim(),
      negotiated: () => negotiatedOf(forwarder),
      settings,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
