/**
 * The `operator` group of `npm run bench`: the operator against a real kube-apiserver and etcd
 * (the Go-built tools of test/env, on 127.0.0.1), measured in two parts.
 *
 * 1. Cold start: N PeerTunnels (1,000; 100 quick), their PeerNetwork and swarm-key Secret are
 *    created while no operator runs; then an operator process starts, and the clock runs from its
 *    spawn until every tunnel has a Ready condition whose observedGeneration is the tunnel's
 *    generation (status.observedGeneration too). The tunnels select no pods, so settled means
 *    Ready=False NoPodsSelected: a status computed and written per tunnel.
 * 2. Webhook under load: with that operator running (its caches holding the N tunnels), pods are
 *    created at a fixed rate (50/s for 10 s; 50/s for 2 s quick), open loop: each create starts on
 *    schedule whatever the earlier ones are doing. Measured per request: the API server's create
 *    call as a client sees it (admission included) and, from the operator's own histogram
 *    (peertunnel_operator_webhook_duration_seconds, bucket-interpolated), the webhook's handling.
 *    The same rate with pods that opt out by label (the API server then never calls the webhook)
 *    is the baseline. The webhook runs with failurePolicy Fail, and every created pod is checked
 *    to carry the sidecar, so a failing webhook cannot pass as a fast one.
 *
 * Runs only where the tools are cached or can be built (Go); otherwise it prints why it skipped.
 * In quick mode it runs only when named in BENCH_ONLY (the bench smoke test stays short).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import { createInterface } from 'node:readline';
import { type ControlPlane, serviceAccountUser, startControlPlane } from '../env/control-plane.js';
import { installOperatorPrerequisites, OPERATOR_NS, OPERATOR_SA } from '../env/operator-prerequisites.js';
import { ensureTools, probeTools } from '../env/tools.js';
import { CLI, parseMetric, testSwarmKey } from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';

const IMAGE = 'ghcr.io/peertunnel/peertunnel:0.1.0';
const COLD_NS = 'bench-cold';
const POD_NS = 'bench-pods';
/** A syntactically valid bootstrap peer: status needs one; nothing dials it (no pods). */
const BOOTSTRAP = '/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';
const HISTOGRAM = 'peertunnel_operator_webhook_duration_seconds';

export interface OperatorBenchOptions {
  quick: boolean;
  /** Named in BENCH_ONLY: runs in quick mode too. */
  explicit: boolean;
  log: (msg: string) => void;
}

export interface OperatorBenchResult {
  /** Why the group did not run, when it did not. */
  skipped?: string;
  sizes?: { tunnels: number; podsPerSecond: number; podSeconds: number };
  figures: Record<string, number>;
  failures: string[];
  notes: string[];
  /** The printed table. */
  text: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? Number.NaN;
}

/** Cumulative bucket counts of a histogram (summed over labels other than `le`), by upper bound. */
export function histogramBuckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`)) continue;
    const le = /[{,]le="([^"]+)"/.exec(line)?.[1];
    const value = /\}\s+(\S+)$/.exec(line)?.[1];
    if (le === undefined || value === undefined) continue;
    const bound = le === '+Inf' ? Number.POSITIVE_INFINITY : Number(le);
    out.set(bound, (out.get(bound) ?? 0) + Number(value));
  }
  return out;
}

/**
 * The q-quantile of the observations between two scrapes of a cumulative histogram, linearly
 * interpolated within its bucket (as PromQL's histogram_quantile); NaN without observations.
 */
export function histogramQuantile(
  before: Map<number, number>,
  after: Map<number, number>,
  q: number,
): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] ?? 0;
    const c = counts[i] ?? 0;
    if (c >= rank) {
      // Above the highest finite bound: report that bound (what histogram_quantile does).
      if (!Number.isFinite(upper)) return lower;
      return lower + ((upper - lower) * (rank - below)) / Math.max(1e-12, c - below);
    }
    lower = upper;
    below = c;
  }
  return lower;
}

interface Api {
  call(method: string, path: string, body?: unknown): Promise<{ status: number; body: string; ms: number }>;
  close(): void;
}

/** HTTPS to the API server as the admin, over kept-alive connections (as client-go would). */
function api(cp: ControlPlane): Api {
  const agent = new Agent({ keepAlive: true, maxSockets: 64, ca: cp.caPem });
  return {
    call(method, path, body) {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const t0 = performance.now();
      return new Promise((resolve, reject) => {
        const req = request(
          `${cp.url}${path}`,
          {
            method,
            agent,
            headers: {
              authorization: `Bearer ${cp.adminToken}`,
              ...(text === undefined ? {} : { 'content-type': 'application/json' }),
            },
            signal: AbortSignal.timeout(30_000),
          },
          (res) => {
            let out = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => {
              out += c;
            });
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: out, ms: performance.now() - t0 }),
            );
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(text);
      });
    },
    close: () => agent.destroy(),
  };
}

async function must(a: Api, method: string, path: string, body?: unknown): Promise<string> {
  const r = await a.call(method, path, body);
  if (r.status < 200 || r.status >= 300)
    throw new Error(`${method} ${path}: ${r.status} ${r.body.slice(0, 300)}`);
  return r.body;
}

/** Runs `fn` over `items`, `n` at a time. */
async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await fn(item);
      }
    }),
  );
}

interface Operator {
  proc: ChildProcess;
  spawnedAt: number;
  startedAt: Promise<number>;
  health: Promise<string>;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

/** The built CLI's `operator`, as the harness of the integration tests runs it (own SA, RBAC). */
async function startOperator(cp: ControlPlane, webhookPort: number): Promise<Operator> {
  const user = cp.users.operator;
  if (user === undefined) throw new Error('no operator user');
  const kubeconfig = await cp.kubeconfigFor(user.token, { name: 'bench-operator', namespace: OPERATOR_NS });
  const spawnedAt = performance.now();
  const proc = spawn(
    process.execPath,
    [
      CLI,
      'operator',
      `--namespace=${OPERATOR_NS}`,
      '--identity=bench-operator',
      `--kubeconfig=${kubeconfig}`,
      `--sidecar-image=${IMAGE}`,
      '--health-listen=127.0.0.1:0',
      `--webhook-listen=127.0.0.1:${webhookPort}`,
      `--webhook-url=https://127.0.0.1:${webhookPort}/mutate-pods`,
      '--webhook-failure-policy=Fail',
      '--log-level=info',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4_000);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let onHealth: (v: string) => void = () => {};
  let onStarted: (v: number) => void = () => {};
  const fail = (reject: (e: Error) => void) =>
    void exited.then(() => reject(new Error(`operator exited: ${stderr.slice(-1_000)}`)));
  const health = new Promise<string>((resolve, reject) => {
    onHealth = resolve;
    fail(reject);
  });
  const startedAt = new Promise<number>((resolve, reject) => {
    onStarted = resolve;
    fail(reject);
  });
  // Handled by whoever awaits them; a rejection nobody awaits must not crash the bench.
  health.catch(() => undefined);
  startedAt.catch(() => undefined);
  createInterface({ input: proc.stdout ?? process.stdin }).on('line', (text) => {
    let l: { event?: string; port?: number };
    try {
      l = JSON.parse(text) as { event?: string; port?: number };
    } catch {
      return;
    }
    if (l.event === 'health_listening') onHealth(`127.0.0.1:${String(l.port)}`);
    if (l.event === 'operator_started') onStarted(performance.now());
  });
  return {
    proc,
    spawnedAt,
    startedAt,
    health,
    metrics: async () => (await fetch(`http://${await health}/metrics`)).text(),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const late = await Promise.race([exited.then(() => false), sleep(15_000).then(() => true)]);
      if (late) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

interface TunnelItem {
  metadata: { name: string; generation?: number };
  status?: { observedGeneration?: number; conditions?: Array<{ type: string; observedGeneration?: number }> };
}

const settled = (t: TunnelItem): boolean => {
  const g = t.metadata.generation;
  const ready = t.status?.conditions?.find((c) => c.type === 'Ready');
  return g !== undefined && t.status?.observedGeneration === g && ready?.observedGeneration === g;
};

const pod = (name: string, labels: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: POD_NS, labels },
  spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
});

interface PodLoad {
  latencies: number[];
  errors: string[];
  injected: number;
  seconds: number;
}

/** Creates `n` pods at `rate` per second, open loop; `labels` and whether the sidecar is expected. */
async function podLoad(a: Api, prefix: string, n: number, rate: number, labels: Record<string, string>) {
  const out: PodLoad = { latencies: [], errors: [], injected: 0, seconds: 0 };
  const t0 = performance.now();
  const pending: Array<Promise<void>> = [];
  for (let i = 0; i < n; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    pending.push(
      a.call('POST', `/api/v1/namespaces/${POD_NS}/pods`, pod(`${prefix}-${i}`, labels)).then(
        (r) => {
          if (r.status !== 201) {
            out.errors.push(`${r.status} ${r.body.slice(0, 200)}`);
            return;
          }
          out.latencies.push(r.ms);
          const p = JSON.parse(r.body) as {
            spec?: { initContainers?: Array<{ name: string }>; containers?: Array<{ name: string }> };
          };
          const names = [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].map((c) => c.name);
          if (names.includes('peertunnel')) out.injected++;
        },
        (err: unknown) => {
          out.errors.push(String(err));
        },
      ),
    );
  }
  await Promise.all(pending);
  out.seconds = (performance.now() - t0) / 1000;
  out.latencies.sort((x, y) => x - y);
  return out;
}

async function rssMB(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return (Number(m?.[1] ?? 0) * 1024) / 1e6;
}

function format(r: OperatorBenchResult, version: string): string {
  const f = r.figures;
  const n = (v: number | undefined, digits = 1) =>
    v === undefined || !Number.isFinite(v) ? 'FAIL' : v.toFixed(digits);
  const s = r.sizes;
  const rows: Array<[string, string]> = [
    [`cold operator: spawn → all ${s?.tunnels} tunnels settled (s)`, n(f.cold_settled_s, 2)],
    ['  of which spawn → operator started, leader (s)', n(f.cold_started_s, 2)],
    ['  tunnels settled per second after start', n(f.cold_rate_per_s, 0)],
    ['  status writes during the settle', n(f.cold_status_writes, 0)],
    ['  operator RSS after the settle (MB)', n(f.cold_rss_mb, 0)],
    [`pod create p50, webhook injecting (ms)`, n(f.create_p50_ms)],
    [`pod create p99, webhook injecting (ms)`, n(f.create_p99_ms)],
    ['pod create p50, opted out: no webhook call (ms)', n(f.baseline_p50_ms)],
    ['pod create p99, opted out: no webhook call (ms)', n(f.baseline_p99_ms)],
    ['webhook handling p50, operator histogram (ms)', n(f.webhook_p50_ms, 2)],
    ['webhook handling p99, operator histogram (ms)', n(f.webhook_p99_ms, 2)],
    ['pods created / injected under load', `${n(f.pods_created, 0)} / ${n(f.pods_injected, 0)}`],
    ['achieved create rate (pods/s)', n(f.achieved_rate)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    `Operator bench: kube-apiserver ${version} and etcd on 127.0.0.1, one operator process`,
    '',
    `${'measure'.padEnd(width)}  value`,
    ...rows.map(([k, v]) => `${k.padEnd(width)}  ${v.padStart(8)}`),
    '',
    `load: ${s?.podsPerSecond} pods/s for ${s?.podSeconds} s, open loop, first without (opt-out label) then with the webhook; ` +
      'create = POST as the API client sees it (admission, etcd write); webhook = the operator’s own ' +
      'histogram (body read → response written), interpolated within buckets [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000] ms',
    `cold: ${s?.tunnels} PeerTunnels selecting no pods (settled = Ready with observedGeneration current, reason NoPodsSelected)`,
    ...r.notes.map((x) => `note: ${x}`),
    ...r.failures.map((x) => `FAILED: ${x}`),
  ].join('\n');
}

export async function operatorBench(o: OperatorBenchOptions): Promise<OperatorBenchResult> {
  const empty = (skipped: string): OperatorBenchResult => ({
    skipped,
    figures: {},
    failures: [],
    notes: [],
    text: `Operator bench: SKIPPED: ${skipped}`,
  });
  if (o.quick && !o.explicit)
    return empty('quick mode runs the operator group only when named (BENCH_ONLY=operator)');
  const probe = probeTools();
  if (!probe.ok)
    return empty(
      `no kube-apiserver/etcd/kubectl: they are built with Go (test/env/build-tools.sh) and this host cannot: ${probe.reason.split('\n')[0]}`,
    );
  const sizes = o.quick
    ? { tunnels: 100, podsPerSecond: 50, podSeconds: 2 }
    : { tunnels: 1_000, podsPerSecond: 50, podSeconds: 10 };
  const pods = sizes.podsPerSecond * sizes.podSeconds;
  const limitMs = o.quick ? 60_000 : 300_000;
  const r: OperatorBenchResult = { sizes, figures: {}, failures: [], notes: [], text: '' };
  const f = r.figures;

  o.log('operator: building or finding kube-apiserver and etcd');
  const tools = await ensureTools({ log: (l) => o.log(`operator: ${l}`) });
  const cp = await startControlPlane({
    tools,
    users: { operator: serviceAccountUser(OPERATOR_NS, OPERATOR_SA) },
  });
  const a = api(cp);
  let op: Operator | undefined;
  let version = '?';
  try {
    version = (JSON.parse(await must(a, 'GET', '/version')) as { gitVersion?: string }).gitVersion ?? '?';
    await installOperatorPrerequisites(cp);
    const key = testSwarmKey();
    for (const ns of [COLD_NS, POD_NS]) {
      await must(a, 'POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns },
      });
      await must(a, 'POST', `/api/v1/namespaces/${ns}/secrets`, {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 'mesh-key', namespace: ns },
        stringData: { 'swarm.key': key },
      });
      await must(a, 'POST', `/apis/peertunnel.io/v1alpha1/namespaces/${ns}/peernetworks`, {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerNetwork',
        metadata: { name: 'mesh', namespace: ns },
        spec: { swarmKeySecretRef: { name: 'mesh-key' }, bootstrap: [BOOTSTRAP] },
      });
    }
    await must(a, 'POST', `/apis/peertunnel.io/v1alpha1/namespaces/${POD_NS}/peertunnels`, {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind: 'PeerTunnel',
      metadata: { name: 'app', namespace: POD_NS },
      spec: {
        networkRef: { name: 'mesh' },
        selector: { matchLabels: { app: 'bench' } },
        forward: [{ name: 'db', localPort: 5432 }],
      },
    });

    // 1. Cold start.
    o.log(`operator: creating ${sizes.tunnels} PeerTunnels with no operator running`);
    const tCreate = performance.now();
    const indexes = Array.from({ length: sizes.tunnels }, (_, i) => i);
    await pool(indexes, 16, async (i) => {
      await must(a, 'POST', `/apis/peertunnel.io/v1alpha1/namespaces/${COLD_NS}/peertunnels`, {
        apiVersion: 'peertunnel.io/v1alpha1',
        kind: 'PeerTunnel',
        metadata: { name: `t-${i}`, namespace: COLD_NS },
        spec: {
          networkRef: { name: 'mesh' },
          selector: { matchLabels: { app: `a-${i}` } },
          forward: [{ name: `svc-${i}`, localPort: 10_000 + i }],
        },
      });
    });
    r.notes.push(
      `${sizes.tunnels} PeerTunnels created in ${((performance.now() - tCreate) / 1000).toFixed(1)} s (16 at a time)`,
    );

    o.log('operator: starting a cold operator');
    op = await startOperator(cp, await freePort());
    const list = `/apis/peertunnel.io/v1alpha1/namespaces/${COLD_NS}/peertunnels`;
    let done = 0;
    for (;;) {
      const items = (JSON.parse(await must(a, 'GET', list)) as { items: TunnelItem[] }).items;
      done = items.filter(settled).length;
      if (done === sizes.tunnels) break;
      if (performance.now() - op.spawnedAt > limitMs) break;
      await sleep(100);
    }
    const settledAt = performance.now();
    const startedAt = await Promise.race([op.startedAt, sleep(1).then(() => Number.NaN)]);
    if (done === sizes.tunnels) {
      f.cold_settled_s = (settledAt - op.spawnedAt) / 1000;
      f.cold_started_s = (startedAt - op.spawnedAt) / 1000;
      f.cold_rate_per_s = sizes.tunnels / ((settledAt - startedAt) / 1000);
    } else
      r.failures.push(`cold start: ${done} of ${sizes.tunnels} tunnels settled within ${limitMs / 1000} s`);
    const m = await op.metrics();
    f.cold_status_writes = parseMetric(m, 'peertunnel_operator_status_writes_total', { kind: 'PeerTunnel' });
    f.cold_rss_mb = await rssMB(op.proc.pid ?? -1);

    // 2. Webhook under load: first make sure it answers (failurePolicy Fail, caBundle set).
    o.log('operator: waiting for the webhook to inject');
    const deadline = performance.now() + 60_000;
    for (let i = 0; ; i++) {
      const w = await a.call('POST', `/api/v1/namespaces/${POD_NS}/pods`, pod(`warm-${i}`, { app: 'bench' }));
      if (w.status === 201 && w.body.includes('"name":"peertunnel"')) break;
      if (performance.now() > deadline)
        throw new Error(`the webhook never injected: ${w.status} ${w.body.slice(0, 300)}`);
      await sleep(250);
    }
    o.log(`operator: ${pods} opted-out pods at ${sizes.podsPerSecond}/s (no webhook call)`);
    const base = await podLoad(a, 'base', pods, sizes.podsPerSecond, {
      app: 'bench',
      'peertunnel.io/inject': 'false',
    });
    f.baseline_p50_ms = quantile(base.latencies, 0.5);
    f.baseline_p99_ms = quantile(base.latencies, 0.99);
    if (base.errors.length > 0)
      r.failures.push(`baseline: ${base.errors.length} creates failed: ${base.errors[0]}`);

    o.log(`operator: ${pods} pods at ${sizes.podsPerSecond}/s through the webhook`);
    const before = histogramBuckets(await op.metrics(), HISTOGRAM);
    const load = await podLoad(a, 'pod', pods, sizes.podsPerSecond, { app: 'bench' });
    const after = histogramBuckets(await op.metrics(), HISTOGRAM);
    f.create_p50_ms = quantile(load.latencies, 0.5);
    f.create_p99_ms = quantile(load.latencies, 0.99);
    f.webhook_p50_ms = histogramQuantile(before, after, 0.5) * 1000;
    f.webhook_p99_ms = histogramQuantile(before, after, 0.99) * 1000;
    f.pods_created = load.latencies.length;
    f.pods_injected = load.injected;
    f.achieved_rate = pods / load.seconds;
    const observed = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
    r.notes.push(`the operator's histogram counted ${observed} admission requests during the load`);
    if (load.errors.length > 0)
      r.failures.push(`webhook load: ${load.errors.length} creates failed: ${load.errors[0]}`);
    if (load.injected !== pods)
      r.failures.push(`webhook load: ${load.injected} of ${pods} pods got the sidecar`);
  } catch (err) {
    r.failures.push(`operator bench: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await op?.stop();
    a.close();
    await cp.stop();
  }
  r.text = format(r, version);
  return r;
}
