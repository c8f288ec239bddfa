/**
 * The chart installed into a real API server, and its operator run as a process the way the chart's
 * Deployment runs it: the Deployment's own flags, a real token of the chart's ServiceAccount
 * (TokenRequest), and only what a pod would have besides (listen addresses on this host, a
 * kubeconfig instead of the mounted token, test timings). Shared by the chart install test and the
 * two-cluster end-to-end test.
 *
 * Without real nodes the API server has no way to a Service, so the Service-based webhook cannot
 * be called: `installChart` installs with webhook.urlOverride, the value meant for service-less
 * clusters. On real nodes (real-node.ts) `installChartAsPods` installs it as a user does: the
 * operator runs as the chart's Deployment and the API server calls its webhook by Service.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { CLI, followJsonLog } from '../helpers/node-process.js';
import { CHART, find, flag, type K8sObject, parseManifests } from '../integration/chart-helpers.js';
import type { ControlPlane } from './control-plane.js';

export const RELEASE = 'peertunnel';
export const RELEASE_NS = 'peertunnel-system';

export interface ChartLogLine {
  level?: string;
  event?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface ChartOperator {
  readonly proc: ChildProcess;
  readonly args: readonly string[];
  readonly logs: ChartLogLine[];
  /** 127.0.0.1:port of /metrics /healthz /readyz */
  readonly health: string;
  stderr(): string;
  waitFor(pred: (l: ChartLogLine) => boolean, timeoutMs?: number): Promise<ChartLogLine>;
  stop(): Promise<void>;
}

export interface ChartRelease {
  readonly release: string;
  readonly namespace: string;
  /** The port of webhook.urlOverride (https://127.0.0.1:<port>/mutate-pods). */
  readonly webhookPort: number;
  /** `helm get manifest`, parsed. */
  readonly manifest: K8sObject[];
  /** The operator Deployment's container args. */
  readonly operatorArgs: readonly string[];
  readonly serviceAccount: string;
}

export async function helmOk(cp: ControlPlane, args: readonly string[]): Promise<string> {
  const r = await cp.helm(args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export interface InstallChartOptions {
  webhookPort: number;
  release?: string;
  namespace?: string;
  /** More `--set name=value` pairs. */
  set?: readonly string[];
}

/** `helm install` with webhook.urlOverride on 127.0.0.1:<webhookPort>. */
export async function installChart(cp: ControlPlane, o: InstallChartOptions): Promise<ChartRelease> {
  const release = o.release ?? RELEASE;
  const namespace = o.namespace ?? RELEASE_NS;
  await helmOk(cp, [
    'install',
    release,
    CHART,
    '--namespace',
    namespace,
    '--create-namespace',
    '--set',
    `webhook.urlOverride=https://127.0.0.1:${o.webhookPort}/mutate-pods`,
    ...(o.set ?? []).flatMap((s) => ['--set', s]),
  ]);
  const manifest = parseManifests(await helmOk(cp, ['get', 'manifest', release, '--namespace', namespace]));
  const pod = find(manifest, 'Deployment').spec.template.spec;
  return {
    release,
    namespace,
    webhookPort: o.webhookPort,
    manifest,
    operatorArgs: pod.containers[0].args as string[],
    serviceAccount: pod.serviceAccountName as string,
  };
}

export interface StartChartOperatorOptions {
  /** The Lease identity (POD_NAME). Default peertunnel-operator-test-0. */
  identity?: string;
  /** Flags after the Deployment's and the test's own (later flags win). */
  extraArgs?: readonly string[];
  /** Copy each log line to stderr with this prefix when PEERTUNNEL_TEST_LOGS=1. */
  logPrefix?: string;
}

/** The operator with the chart ServiceAccount's token and the Deployment's flags. */
export async function startChartOperator(
  cp: ControlPlane,
  rel: ChartRelease,
  o: StartChartOperatorOptions = {},
): Promise<ChartOperator> {
  const identity = o.identity ?? 'peertunnel-operator-test-0';
  const token = await cp.serviceAccountToken(rel.namespace, rel.serviceAccount);
  const kubeconfig = await cp.kubeconfigFor(token, { name: identity, namespace: rel.namespace });
  const args = [
    ...rel.operatorArgs,
    // What differs from a pod: addresses on this host, a kubeconfig instead of the mounted token,
    // and shorter timings for a test.
    `--kubeconfig=${kubeconfig}`,
    '--health-listen=127.0.0.1:0',
    `--webhook-listen=127.0.0.1:${rel.webhookPort}`,
    '--lease-duration=6',
    '--status-interval=1',
    ...(o.extraArgs ?? []),
  ];
  const proc = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, POD_NAMESPACE: rel.namespace, POD_NAME: identity },
  });
  let stderrText = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderrText += d.toString();
  });
  const prefix = o.logPrefix ?? 'chart-op';
  const { logs, exited, waitFor } = followJsonLog<ChartLogLine>(proc, {
    timeoutMs: 60_000,
    onLine: (text) => {
      if (process.env.PEERTUNNEL_TEST_LOGS === '1') process.stderr.write(`[${prefix}] ${text}\n`);
    },
    timeoutError: (ms, seen, stderr) =>
      new Error(
        `${prefix}: no such log line in ${ms} ms; last: ${JSON.stringify(seen.slice(-5))} ${stderr.slice(-500)}`,
      ),
    exitError: (code, seen, stderr) =>
      new Error(`${prefix} exited with ${code}: ${stderr.slice(-1500)} ${JSON.stringify(seen.slice(-5))}`),
  });
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
  };
  try {
    const healthLine = await waitFor((l) => l.event === 'health_listening');
    await waitFor((l) => l.event === 'operator_started');
    return {
      proc,
      args,
      logs,
      health: `127.0.0.1:${String(healthLine.port)}`,
      stderr: () => stderrText,
      waitFor,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface PodsReleaseOptions {
  /** The image the chart runs (`localhost/peertunnel:<key>`), never pulled. */
  image: string;
  /** More `--set name=value` pairs. */
  set?: readonly string[];
  /** Give up on the operator Deployment becoming available after this long. Default 180 s. */
  timeoutMs?: number;
}

export interface PodsRelease {
  readonly release: string;
  readonly namespace: string;
  readonly manifest: K8sObject[];
}

/** `helm install` with the locally built image; waits until the operator's pod is available. */
export async function installChartAsPods(cp: ControlPlane, o: PodsReleaseOptions): Promise<PodsRelease> {
  const colon = o.image.lastIndexOf(':');
  await helmOk(cp, [
    'install',
    RELEASE,
    CHART,
    '--namespace',
    RELEASE_NS,
    '--create-namespace',
    ...[
      `image.repository=${o.image.slice(0, colon)}`,
      `image.tag=${o.image.slice(colon + 1)}`,
      'image.pullPolicy=Never',
      ...(o.set ?? []),
    ].flatMap((s) => ['--set', s]),
  ]);
  const timeoutMs = o.timeoutMs ?? 180_000;
  const r = await cp.kubectl(
    ['-n', RELEASE_NS, 'rollout', 'status', 'deployment', '--timeout', `${Math.round(timeoutMs / 1000)}s`],
    { timeoutMs: timeoutMs + 10_000 },
  );
  if (r.code !== 0) {
    const pods = await cp.kubectl(['-n', RELEASE_NS, 'get', 'pods', '-o', 'wide']);
    const logs = await cp.kubectl([
      '-n',
      RELEASE_NS,
      'logs',
      '-l',
      'app.kubernetes.io/name=peertunnel',
      '--tail=40',
    ]);
    throw new Error(
      `the operator Deployment is not available: ${r.stderr}\n${pods.stdout}\n${logs.stdout}${logs.stderr}`,
    );
  }
  const manifest = parseManifests(await helmOk(cp, ['get', 'manifest', RELEASE, '--namespace', RELEASE_NS]));
  return { release: RELEASE, namespace: RELEASE_NS, manifest };
}

export { flag };
