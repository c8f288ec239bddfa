/**
 * The Kubernetes binaries the integration tests run (kube-apiserver, kube-controller-manager, etcd,
 * kubectl, helm), built from the Go module proxy by `build-tools.sh` and cached outside the
 * repository, keyed by version.
 * The script is the one place that knows versions and cache layout; this module only runs it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ToolsBuildError, ToolsUnavailableError } from './errors.js';

export interface ToolPaths {
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  readonly etcd: string;
  readonly kubectl: string;
  readonly helm: string;
}

export interface EnsureToolsOptions {
  /** Where build progress goes, line by line. Default: process.stderr (so a cold build is visible). */
  log?: (line: string) => void;
}

export type ToolsProbe = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** The build script's exit code for "no usable Go toolchain". */
const EXIT_NO_GO = 3;

const here = dirname(fileURLToPath(import.meta.url));
/** Next to this file when run from source; from `dist/test/env/` the script stays in the source tree. */
export const buildScriptPath: string =
  [join(here, 'build-tools.sh'), join(here, '..', '..', '..', 'test', 'env', 'build-tools.sh')].find((p) =>
    existsSync(p),
  ) ?? join(here, 'build-tools.sh');

const scriptNames: Record<string, keyof ToolPaths> = {
  'kube-apiserver': 'kubeApiserver',
  'kube-controller-manager': 'kubeControllerManager',
  etcd: 'etcd',
  kubectl: 'kubectl',
  helm: 'helm',
};

function parsePaths(stdout: string): ToolPaths {
  const found: Partial<Record<keyof ToolPaths, string>> = {};
  for (const line of stdout.split('\n')) {
    const [name, path] = line.split('\t');
    const key = name === undefined ? undefined : scriptNames[name];
    if (key !== undefined && path) found[key] = path;
  }
  const { kubeApiserver, kubeControllerManager, etcd, kubectl, helm } = found;
  if (!kubeApiserver || !kubeControllerManager || !etcd || !kubectl || !helm) {
    throw new ToolsBuildError(0, `build-tools.sh did not report every tool:\n${stdout}`);
  }
  return { kubeApiserver, kubeControllerManager, etcd, kubectl, helm };
}

/**
 * Synchronous and cheap (no build): are the tools cached, or can they be built here? Synchronous
 * because jest must decide `describe` versus `describe.skip` while it collects tests.
 */
export function probeTools(): ToolsProbe {
  const r = spawnSync('bash', [buildScriptPath, '--probe'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return { ok: true };
  const reason = r.error?.message ?? (r.stderr.trim() || `build-tools.sh --probe exited ${String(r.status)}`);
  return { ok: false, reason };
}

let pending: Promise<ToolPaths> | undefined;

/**
 * Builds the tools if they are not cached yet (minutes, once per version and machine; concurrent
 * callers in other processes wait on the script's lock) and returns their paths. Memoised per
 * process, so every test in a file pays for the check once.
 */
export function ensureTools(opts: EnsureToolsOptions = {}): Promise<ToolPaths> {
  pending ??= runBuild(opts).catch((err: unknown) => {
    // A failed build may succeed on a retry (a network blip); do not cache the failure.
    pending = undefined;
    throw err;
  });
  return pending;
}

/** A real node's binaries (real-node.ts), built by the same script at the same version. */
export interface NodeToolPaths {
  readonly kubelet: string;
  readonly kubeScheduler: string;
  readonly kubeProxy: string;
}

const NODE_TOOLS = ['kubelet', 'kube-scheduler', 'kube-proxy'] as const;

/** `probeTools` for the node tools. */
export function probeNodeTools(): ToolsProbe {
  const r = spawnSync('bash', [buildScriptPath, '--probe', ...NODE_TOOLS], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (r.status === 0) return { ok: true };
  const reason = r.error?.message ?? (r.stderr.trim() || `build-tools.sh --probe exited ${String(r.status)}`);
  return { ok: false, reason };
}

let pendingNode: Promise<NodeToolPaths> | undefined;

/** `ensureTools` for kubelet, kube-scheduler and kube-proxy. */
export function ensureNodeTools(opts: EnsureToolsOptions = {}): Promise<NodeToolPaths> {
  pendingNode ??= runScript(opts, [...NODE_TOOLS])
    .then((stdout) => {
      const found = new Map(stdout.split('\n').map((l) => l.split('\t') as [string, string]));
      const [kubelet, kubeScheduler, kubeProxy] = NODE_TOOLS.map((t) => found.get(t));
      if (!kubelet || !kubeScheduler || !kubeProxy) {
        throw new ToolsBuildError(0, `build-tools.sh did not report every node tool:\n${stdout}`);
      }
      return { kubelet, kubeScheduler, kubeProxy };
    })
    .catch((err: unknown) => {
      pendingNode = undefined;
      throw err;
    });
  return pendingNode;
}

function runBuild(opts: EnsureToolsOptions): Promise<ToolPaths> {
  return runScript(opts, []).then(parsePaths);
}

function runScript(opts: EnsureToolsOptions, args: readonly string[]): Promise<string> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [buildScriptPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let tail: string[] = [];
    let partial = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        log(line);
        tail.push(line);
      }
      // Keep enough to explain a failure, not a whole `go: downloading` flood.
      if (tail.length > 200) tail = tail.slice(-100);
    });
    child.on('error', (err) => reject(new ToolsUnavailableError(`cannot run bash: ${err.message}`)));
    child.on('close', (code) => {
      if (partial) tail.push(partial);
      if (code === 0) {
        resolve(stdout);
      } else if (code === EXIT_NO_GO) {
        reject(new ToolsUnavailableError(tail.join('\n').trim() || 'no usable Go toolchain'));
      } else {
        reject(new ToolsBuildError(code, tail.slice(-60).join('\n')));
      }
    });
  });
}
