/**
 * kubo (`ipfs`), a libp2p peer that no one here wrote, for the interop tests: built from the Go
 * module proxy by `test/env/build-tools.sh ipfs` (cached by version like the Kubernetes tools) and
 * run as a daemon on 127.0.0.1 with its repository (IPFS_PATH) in a temporary directory.
 *
 * The daemon joins a PeerTunnel private network: the same swarm.key (kubo then runs TCP only, as we
 * do), our relay as its only bootstrap peer, Kademlia on `/ipfs/kad/1.0.0` (the network sets its
 * `dht.protocol` to kubo's), `ipfs p2p` enabled (Experimental.Libp2pStreamMounting).
 *
 * Loopback and kubo's WAN DHT: kubo runs two DHTs, a WAN one on /ipfs/kad/1.0.0 that keeps only
 * peers with public addresses, and a LAN one on /ipfs/lan/kad/1.0.0 for private ones. On a single
 * host every peer is on 127.0.0.1, so the WAN DHT would ignore our relay. kubo's own test switch
 * TEST_DHT_STUB lets loopback peers into its WAN DHT (kubo core/node/libp2p/routingopt.go), which is
 * what its own CLI harness uses for the same situation.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildScriptPath } from '../env/tools.js';

const run = promisify(execFile);

/** The build script's exit code for "no usable Go toolchain". */
const EXIT_NO_GO = 3;

/** Long enough for a cold build of kubo on a small shared machine. */
export const KUBO_BUILD_TIMEOUT_MS = 30 * 60_000;

export class KuboUnavailableError extends Error {
  constructor(readonly reason: string) {
    super(`kubo cannot be built here: ${reason}`);
    this.name = 'KuboUnavailableError';
  }
}

export class KuboBuildError extends Error {
  constructor(
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(`building kubo failed (exit ${String(exitCode)}):\n${output}`);
    this.name = 'KuboBuildError';
  }
}

export class KuboStartError extends Error {
  constructor(
    readonly detail: string,
    readonly log: string,
  ) {
    super(`kubo did not start: ${detail}\n--- kubo's output ---\n${log}`);
    this.name = 'KuboStartError';
  }
}

/** The path of the kubo binary, building it first on a cold cache (minutes). */
export function ensureKubo(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [buildScriptPath, 'ipfs'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let tail: string[] = [];
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      process.stderr.write(c);
      tail.push(...c.split('\n'));
      if (tail.length > 200) tail = tail.slice(-100);
    });
    child.on('error', (err) => reject(new KuboUnavailableError(`cannot run bash: ${err.message}`)));
    child.on('close', (code) => {
      const path = /^ipfs\t(.+)$/m.exec(stdout)?.[1];
      if (code === 0 && path !== undefined) resolve(path);
      else if (code === EXIT_NO_GO) reject(new KuboUnavailableError(tail.join('\n').trim()));
      else reject(new KuboBuildError(code, tail.slice(-60).join('\n')));
    });
  });
}

/**
 * The path of a cached kubo binary, without building it (a build takes minutes): `undefined` when
 * `build-tools.sh --check ipfs` says it is not cached. For callers that carry on without kubo.
 */
export function cachedKubo(): string | undefined {
  const r = spawnSync('bash', [buildScriptPath, '--check', 'ipfs'], { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0 ? /^ipfs\t(.+)$/m.exec(r.stdout)?.[1] : undefined;
}

/** kubo's JSON config, as far as these helpers edit it. */
export type KuboConfig = Record<string, Record<string, unknown>>;

export interface KuboOptions {
  bin: string;
  /** The network's swarm.key text (kubo/go-libp2p format). Absent: a node outside the network. */
  swarmKey?: string;
  /** Bootstrap multiaddrs, each ending in /p2p/<peer>. */
  bootstrap: string[];
  /** GOLOG_LOG_LEVEL for the daemon, e.g. 'error,dht=debug,p2p-config=debug'. @default 'error' */
  logLevel?: string;
  /** Last edits to the config before the daemon starts (after this module's own). */
  configure?: (cfg: KuboConfig) => void;
}

export interface KuboNode {
  readonly peerId: string;
  readonly ipfsPath: string;
  readonly proc: ChildProcess;
  /** Milliseconds from spawning `ipfs daemon` to its "Daemon is ready" (the repo already made). */
  readonly startMs: number;
  /** Runs `ipfs <args>` against this daemon; rejects on a non-zero exit. */
  ipfs(args: string[], timeoutMs?: number): Promise<string>;
  /** The daemon's output so far (stdout and stderr), for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

export async function startKubo(opts: KuboOptions): Promise<KuboNode> {
  const ipfsPath = await mkdtemp(join(tmpdir(), 'pt-kubo-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    IPFS_PATH: ipfsPath,
    GOLOG_LOG_LEVEL: opts.logLevel ?? 'error',
    // Loopback peers in kubo's WAN DHT (/ipfs/kad/1.0.0): see the top of this file.
    TEST_DHT_STUB: '1',
    ...(opts.swarmKey === undefined ? {} : { LIBP2P_FORCE_PNET: '1' }),
  };
  const ipfs = async (args: string[], timeoutMs = 30_000): Promise<string> => {
    const { stdout } = await run(opts.bin, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  };
  await ipfs(['init', '--profile=test', '--empty-repo']);
  const configFile = join(ipfsPath, 'config');
  const cfg = JSON.parse(await readFile(configFile, 'utf8')) as KuboConfig;
  const peerId = String((cfg.Identity as { PeerID: string }).PeerID);
  const section = (k: string): Record<string, unknown> => {
    cfg[k] ??= {};
    return cfg[k];
  };
  cfg.Bootstrap = opts.bootstrap as unknown as Record<string, unknown>;
  section('Addresses').Swarm = ['/ip4/127.0.0.1/tcp/0'];
  section('Addresses').API = '/ip4/127.0.0.1/tcp/0';
  section('Addresses').Gateway = '/ip4/127.0.0.1/tcp/0';
  // A DHT server, so that it answers our nodes' queries too; nothing delegated over HTTP.
  Object.assign(section('Routing'), { Type: 'dhtserver', DelegatedRouters: [] });
  // The classic provider: `ipfs routing provide` announces right away instead of queueing a sweep.
  section('Provide').DHT = { SweepEnabled: false };
  section('Experimental').Libp2pStreamMounting = true;
  section('Discovery').MDNS = { Enabled: false };
  const swarm = section('Swarm');
  swarm.Transports = {
    Network: { TCP: true, QUIC: false, WebTransport: false, WebRTCDirect: false, Websocket: false },
  };
  Object.assign(swarm, {
    DisableNatPortMap: true,
    RelayClient: { Enabled: false },
    RelayService: { Enabled: false },
    EnableHolePunching: false,
  });
  opts.configure?.(cfg);
  await writeFile(configFile, JSON.stringify(cfg, null, 2));
  if (opts.swarmKey !== undefined) await writeFile(join(ipfsPath, 'swarm.key'), opts.swarmKey);

  const spawnedAt = performance.now();
  const proc = spawn(opts.bin, ['daemon', '--migrate=false'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<void>((res) => proc.once('exit', () => res()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new KuboStartError('not ready after 60 s', out.slice(-4000))),
      60_000,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes('Daemon is ready')) {
        clearTimeout(timer);
        resolve();
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new KuboStartError(`exited with ${String(code)}`, out.slice(-4000)));
    });
  });
  const startMs = performance.now() - spawnedAt;
  return {
    peerId,
    ipfsPath,
    proc,
    startMs,
    ipfs,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      await rm(ipfsPath, { recursive: true, force: true });
    },
  };
}
