/**
 * Runs `peertunnel node` as a real separate process (the built CLI in dist/), learns its admin
 * port and addresses from its JSON log, and stops it. Used by integration tests and the bench.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import { generateSwarmKey } from '../../sidecar/config/swarm-key.js';
import { BUNDLE_PATH, NODE_FLAGS } from '../../sidecar/node/flags.js';
import type { PeerNodeStatus } from '../../sidecar/node/peer-node.js';

export const REPO_ROOT = resolve(
  import.meta.dirname,
  '..',
  '..',
  import.meta.dirname.includes('/dist/') ? '..' : '.',
);
export const CLI = join(REPO_ROOT, 'dist', 'bin', 'peertunnel.js');
/** The bundled CLI the image runs (sidecar/node/flags.ts). */
export const BUNDLE = join(REPO_ROOT, BUNDLE_PATH);

export interface LogLine {
  level: string;
  event?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface NodeProcess {
  proc: ChildProcess;
  peerId: string;
  addresses: string[];
  adminPort: number;
  admin: string;
  logs: LogLine[];
  status(): Promise<PeerNodeStatus>;
  metrics(): Promise<string>;
  /** The value of one sample, e.g. metric('peertunnel_streams_opened_total', { service: 'x' }). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  waitFor(predicate: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

export interface StartNodeOptions {
  /** Extra env (the swarm key env var is set by the caller). */
  env?: NodeJS.ProcessEnv;
  /** Wrap the command, e.g. ['ip', 'netns', 'exec', 'ns1']. */
  prefix?: string[];
  startTimeoutMs?: number;
  /**
   * Run the bundle with Node flags, as the image does: `true` for the flags of
   * sidecar/node/flags.ts, or the flags to use instead. Default: the unbundled CLI, no flags.
   */
  bundle?: boolean | readonly string[];
}

/** A fresh swarm key text, for tests that need a private network of their own. */
export function testSwarmKey(): string {
  return generateSwarmKey();
}

export function parseMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const got = Object.fromEntries(
      [...(m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) {
      total += Number(m[4]);
      found = true;
    }
  }
  return found ? total : 0;
}

export async function startNodeProcess(
  config: NodeConfigInput,
  options: StartNodeOptions = {},
): Promise<NodeProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'pt-node-'));
  const file = join(dir, 'node.json');
  await writeFile(file, JSON.stringify({ admin: { listen: '127.0.0.1:0' }, ...config }));
  const program =
    options.bundle === undefined || options.bundle === false
      ? [CLI]
      : [...(options.bundle === true ? NODE_FLAGS : options.bundle), BUNDLE];
  const argv = [...(options.prefix ?? []), process.execPath, ...program, 'node', '--config', file];
  const [cmd = process.execPath, ...args] = argv;
  const proc = spawn(cmd, args, {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const { logs, exited, waitFor } = followJsonLog<LogLine>(proc, {
    timeoutMs: 15_000,
    timeoutError: (_ms, _logs, stderr) =>
      new Error(`timed out waiting for a log line; stderr: ${stderr.slice(-500)}`),
    exitError: (code, _logs, stderr) => new Error(`node exited with ${code}: ${stderr.trim().slice(-500)}`),
  });

  const started = await waitFor((l) => l.event === 'node_started', options.startTimeoutMs ?? 20_000);
  const adminLine = await waitFor((l) => l.event === 'admin_listening');
  const adminPort = Number(adminLine.port);
  const admin = `127.0.0.1:${adminPort}`;
  const peerId = String(started.peer);
  const addresses = (started.addresses as string[]).map((a) =>
    a.includes('/p2p/') ? a : `${a}/p2p/${peerId}`,
  );

  const metrics = async () => (await fetch(`http://${admin}/metrics`)).text();
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const code = await exited;
    await rm(dir, { recursive: true, force: true });
    return code;
  };
  return {
    proc,
    peerId,
    addresses,
    adminPort,
    admin,
    logs,
    status: async () => (await (await fetch(`http://${admin}/status`)).json()) as PeerNodeStatus,
    metrics,
    metric: async (name, labels) => parseMetric(await metrics(), name, labels),
    waitFor,
    stop,
    kill: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface FollowJsonLogOptions<L> {
  /** The default wait of waitFor. */
  timeoutMs: number;
  /** Called with each JSON line's text, after it is recorded. */
  onLine?: (text: string) => void;
  /** The error a wait that timed out rejects with. */
  timeoutError(timeoutMs: number, logs: L[], stderr: string): Error;
  /** The error a wait pending when the process exits rejects with. */
  exitError(code: number | null, logs: L[], stderr: string): Error;
}

export interface JsonLog<L> {
  /** Every JSON line on stdout so far (other lines are skipped). */
  logs: L[];
  /** The exit code, once the process exits. */
  exited: Promise<number | null>;
  /** The first line (seen or to come) that matches; rejects on timeout or exit. */
  waitFor(predicate: (line: L) => boolean, timeoutMs?: number): Promise<L>;
}

/** Follows a child's JSON-lines log on stdout (and keeps its stderr for the errors). */
export function followJsonLog<L>(proc: ChildProcess, o: FollowJsonLogOptions<L>): JsonLog<L> {
  const logs: L[] = [];
  const waiters = new Set<{ predicate: (l: L) => boolean; resolve: (l: L) => void }>();
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  createInterface({ input: proc.stdout ?? process.stdin }).on('line', (text) => {
    let line: L;
    try {
      line = JSON.parse(text) as L;
    } catch {
      return;
    }
    logs.push(line);
    o.onLine?.(text);
    for (const w of waiters) {
      if (w.predicate(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
    }
  });
  const exited = new Promise<number | null>((res) => proc.once('exit', (code) => res(code)));

  const waitFor = (predicate: (l: L) => boolean, timeoutMs = o.timeoutMs): Promise<L> => {
    const seen = logs.find(predicate);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<L>((res, rej) => {
      const w = { predicate, resolve: res };
      const timer = setTimeout(() => {
        waiters.delete(w);
        rej(o.timeoutError(timeoutMs, logs, stderr));
      }, timeoutMs);
      w.resolve = (l) => {
        clearTimeout(timer);
        res(l);
      };
      waiters.add(w);
      void exited.then((code) => {
        if (waiters.has(w)) {
          clearTimeout(timer);
          waiters.delete(w);
          rej(o.exitError(code, logs, stderr));
        }
      });
    });
  };
  return { logs, exited, waitFor };
}

/** Polls until `check` returns a value that is not undefined, or throws after `timeoutMs`. */
export async function eventually<T>(
  check: () => Promise<T | undefined>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
