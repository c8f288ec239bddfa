/**
 * Shared pieces of the operator integration tests: the CRDs and RBAC to apply, operator processes
 * (the built CLI, as a Deployment would run it, under the operator's own service account), and
 * polling helpers. Each test file starts its own control plane.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import type { V1Pod } from '@kubernetes/client-node';
import type { ControlPlane } from '../env/control-plane.js';
import { serviceAccountUser } from '../env/control-plane.js';
import { OPERATOR_NS, OPERATOR_SA } from '../env/operator-prerequisites.js';
import { CLI, followJsonLog, parseMetric } from '../helpers/node-process.js';

export { installOperatorPrerequisites, OPERATOR_NS, OPERATOR_SA } from '../env/operator-prerequisites.js';
export { freePort } from '../helpers/ports.js';
export const IMAGE = 'ghcr.io/peertunnel/peertunnel:0.1.0';
export const operatorUsers = { operator: serviceAccountUser(OPERATOR_NS, OPERATOR_SA) };

export interface LogLine {
  level?: string;
  event?: string;
  msg?: string;
  [key: string]: unknown;
}

export interface OperatorProcess {
  proc: ChildProcess;
  identity: string;
  logs: LogLine[];
  /** 127.0.0.1:port of /metrics /healthz /readyz */
  health: string;
  metrics(): Promise<string>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

export interface OperatorProcessOptions {
  identity: string;
  webhookPort: number;
  extraArgs?: string[];
}

export async function startOperator(cp: ControlPlane, o: OperatorProcessOptions): Promise<OperatorProcess> {
  const user = cp.users.operator;
  if (user === undefined) throw new Error('the control plane needs the operator user (operatorUsers)');
  const kubeconfig = await cp.kubeconfigFor(user.token, { name: o.identity, namespace: OPERATOR_NS });
  const args = [
    CLI,
    'operator',
    `--namespace=${OPERATOR_NS}`,
    `--identity=${o.identity}`,
    `--kubeconfig=${kubeconfig}`,
    `--sidecar-image=${IMAGE}`,
    '--health-listen=127.0.0.1:0',
    `--webhook-listen=127.0.0.1:${o.webhookPort}`,
    '--webhook-reuse-port',
    `--webhook-url=https://127.0.0.1:${o.webhookPort}/mutate-pods`,
    '--lease-duration=6',
    '--status-interval=1',
    '--log-level=debug',
    ...(o.extraArgs ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const { logs, exited, waitFor } = followJsonLog<LogLine>(proc, {
    timeoutMs: 30_000,
    onLine: (text) => {
      if (process.env.PEERTUNNEL_TEST_LOGS === '1') process.stderr.write(`[${o.identity}] ${text}\n`);
    },
    timeoutError: (timeoutMs, seen, stderr) =>
      new Error(
        `${o.identity}: no such log line in ${timeoutMs} ms; last: ${JSON.stringify(seen.slice(-5))} ${stderr.slice(-500)}`,
      ),
    exitError: (code, seen, stderr) =>
      new Error(
        `${o.identity} exited with ${code}: ${stderr.slice(-1000)} ${JSON.stringify(seen.slice(-5))}`,
      ),
  });
  const healthLine = await waitFor((l) => l.event === 'health_listening');
  await waitFor((l) => l.event === 'operator_started', 60_000);
  const health = `127.0.0.1:${String(healthLine.port)}`;
  const metrics = async () => (await fetch(`http://${health}/metrics`)).text();
  const end = async (signal: NodeJS.Signals) => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    await exited;
  };
  return {
    proc,
    identity: o.identity,
    logs,
    health,
    metrics,
    metric: async (name, labels) => parseMetric(await metrics(), name, labels),
    waitFor,
    stop: () => end('SIGTERM'),
    kill: () => end('SIGKILL'),
  };
}

/** Polls `fn` until it returns a value (not undefined), or fails with the last value seen. */
export async function eventually<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`);
    await sleep(200);
  }
}

export async function getJson<T>(cp: ControlPlane, args: string[]): Promise<T> {
  return JSON.parse(await cp.kubectlOk([...args, '-o', 'json'])) as T;
}

export interface ReadyCondition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastTransitionTime: string;
}

export interface ObjWithStatus {
  metadata: { resourceVersion: string; generation?: number; uid?: string };
  status?: {
    observedGeneration?: number;
    conditions?: ReadyCondition[];
    [k: string]: unknown;
  };
}

export function readyOf(o: ObjWithStatus): ReadyCondition | undefined {
  return o.status?.conditions?.find((c) => c.type === 'Ready');
}

/** Waits until the object's Ready condition has `reason`; returns the object. */
export function waitForReason(
  cp: ControlPlane,
  resource: string,
  ns: string,
  reason: string,
  timeoutMs = 30_000,
) {
  return eventually(
    `${resource} Ready reason ${reason}`,
    async () => {
      const o = await getJson<ObjWithStatus>(cp, ['-n', ns, 'get', resource]);
      const r = readyOf(o);
      if (r?.reason !== reason) throw new Error(`reason is ${r?.reason ?? '(none)'}: ${r?.message ?? ''}`);
      return o;
    },
    timeoutMs,
  );
}

export interface EventItem {
  reason: string;
  note: string;
  type: string;
  regarding: { kind: string; name: string };
}

export async function eventsOf(
  cp: ControlPlane,
  ns: string,
  kind: string,
  name: string,
): Promise<EventItem[]> {
  const list = await getJson<{ items: EventItem[] }>(cp, ['-n', ns, 'get', 'events.events.k8s.io']);
  return list.items.filter((e) => e.regarding.kind === kind && e.regarding.name === name);
}

/** POSTs an AdmissionReview to the webhook directly (new connection each time), trusting `ca`. */
export function review(
  port: number,
  ca: string,
  pod: V1Pod,
  namespace: string,
): Promise<{ response: { allowed: boolean; patch?: string } }> {
  const body = JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: `test-${Date.now()}`,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      operation: 'CREATE',
      namespace,
      object: pod,
    },
  });
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/mutate-pods',
        method: 'POST',
        ca,
        agent: false,
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve(JSON.parse(text) as { response: { allowed: boolean; patch?: string } }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The webhook's CA, from the Secret the replicas share. */
export async function webhookCa(cp: ControlPlane): Promise<string> {
  const secret = await getJson<{ data: Record<string, string> }>(cp, [
    '-n',
    OPERATOR_NS,
    'get',
    'secret',
    'peertunnel-webhook-tls',
  ]);
  return Buffer.from(secret.data['ca.crt'] ?? '', 'base64').toString('utf8');
}
