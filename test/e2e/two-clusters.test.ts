/**
 * The README walk-through, end to end, on two real clusters whose pods live behind NATs.
 *
 *   lab "internet": relay0 203.0.113.10 ── cluster B's relay pod (PeerNetwork spec.relay, announce)
 *   site b (eim, 3 hosts)        ── cluster B's redis pods (injected sidecar + Debian's redis-server)
 *   site a (eim | symmetric)     ── cluster A's client pod (injected sidecar + `sleep infinity`)
 *
 * Each cluster: kube-apiserver + etcd + kube-controller-manager (Deployments make pods), the chart
 * installed with helm, its operator as a process under the chart's ServiceAccount, and a lab
 * kubelet that runs each pod's containers in a lab host's network namespace. The manifests are the
 * README's own files (examples/two-clusters/, pinned to the README by test/unit/readme-examples).
 *
 * Lab-only differences from the README, and nothing else:
 *  1. helm install --set webhook.urlOverride=https://127.0.0.1:<port>/mutate-pods (no kube-proxy:
 *     the API server cannot reach a Service), and the operator runs as a process on this host with
 *     --trust-admin-address-annotation (sidecar admin ports reached through the kubelet's forwards)
 *     and test timings (--status-interval=1, --lease-duration=6): test/env/chart-release.ts.
 *  2. kubectl patch peernetwork mesh spec.publicRanges = the lab's ranges, in both clusters, right
 *     after the network is applied: the lab's "internet" is made of documentation ranges, which a
 *     node does not treat as public unless told (labOnlyPublicRanges).
 *  3. The swarm key Secret is created from a temp file path (`--from-file=<dir>/swarm.key`) rather
 *     than the current directory's swarm.key: the same key name and content.
 *  4. `kubectl exec` is the kubelet's RunningPod.exec (no container runtime).
 *
 * Runs: A behind an endpoint-independent NAT (the sidecars hole-punch: PATH hole-punched) with the
 * whole check list, then A behind a symmetric NAT (PATH relayed), lean: Ready, path, workload.
 * Needs root, the Go-built tools, redis and Prometheus: a loud skip elsewhere, a failure under CI=true.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import { allQueries } from '../../observability/dashboards.js';
import type { RunningPod } from '../env/lab-kubelet.js';
import { CLI, parseMetric } from '../helpers/node-process.js';
import { eventually } from '../integration/operator-harness.js';
import {
  type Prometheus,
  type ScrapeTarget,
  startPrometheus,
  staticScrapeConfigs,
} from '../integration/prometheus-server.js';
import { createLab, type Lab, type LabHost } from '../lab/index.js';
import { APP_NS, type Cluster, startCluster } from './cluster.js';
import { benchmark, connectionsReceived, pingConnections, readKeys, writeKeys } from './redis.js';
import { describeE2E } from './skip.js';
import {
  applyFile,
  applyNetworkA,
  FILES,
  getPeerTunnels,
  labOnlyPublicRanges,
  relayAddress,
  type TableRow,
  waitNetworkReady,
} from './walkthrough.js';

const RELAY_OF_LABEL = 'peertunnel.io/relay-of';
/** Bounded workload sizes. */
const BENCH_REQUESTS = 2_000;
const KEYS = 200;
const NEW_CONNECTIONS = 40;

interface Run {
  nat: 'eim' | 'symmetric';
  /** The PATH column of A's forwarding tunnel. */
  path: 'hole-punched' | 'relayed';
  /** Scaling, fail-over and Prometheus too (the second run keeps to Ready, path and workload). */
  full: boolean;
}
const RUNS: Run[] = [
  { nat: 'eim', path: 'hole-punched', full: true },
  { nat: 'symmetric', path: 'relayed', full: false },
];

const label = (p: V1Pod, key: string): string | undefined => p.metadata?.labels?.[key];
const isRelay = (p: V1Pod) => label(p, RELAY_OF_LABEL) !== undefined;
const app = (name: string) => (p: V1Pod) => label(p, 'app') === name;

/** Whether the webhook gave the pod its sidecar (a native sidecar or a plain container). */
async function injected(c: Cluster, pod: RunningPod): Promise<boolean> {
  const p = JSON.parse(await c.kubectl(['-n', APP_NS, 'get', 'pod', pod.name, '-o', 'json'])) as V1Pod;
  return [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])].some(
    (x) => x.name === 'peertunnel',
  );
}

/** The client sidecar's /status providers of its forwards (for the fail-over log). */
async function forwardProviders(admin: string | undefined): Promise<unknown> {
  if (admin === undefined) return 'no admin address';
  const status = (await (await fetch(`http://${admin}/status`)).json()) as { forwards?: unknown[] };
  return (status.forwards ?? []).map((f) => (f as { providers?: unknown }).providers);
}

/** Sidecar log lines about providers and peers (pino JSON), in order, for the fail-over log. */
const PROVIDER_EVENTS = new Set([
  'provider_failed',
  'provider_addresses_refreshed',
  'provider_unreachable',
  'providers_changed',
  'peer_disconnected',
  'stream_open_failed',
]);
function providerEvents(output: string): string[] {
  return output.split('\n').filter((line) => {
    try {
      const event = (JSON.parse(line) as { event?: unknown }).event;
      return typeof event === 'string' && PROVIDER_EVENTS.has(event);
    } catch {
      return false;
    }
  });
}

/** The row of a named object in a `kubectl get` table. */
const row = (rows: TableRow[], name: string): TableRow | undefined => rows.find((r) => r.NAME === name);

describeE2E('two clusters behind NATs: the README walk-through', () => {
  describe.each(RUNS)('cluster A behind a $nat NAT', (run) => {
    let lab: Lab | undefined;
    let a: Cluster | undefined;
    let b: Cluster | undefined;
    let prom: Prometheus | undefined;
    let keyDir = '';
    let client: RunningPod;
    let redis0: RunningPod;
    let t0 = Date.now();
    let last = t0;
    const phase = (what: string) => {
      const now = Date.now();
      console.log(`[e2e ${run.nat}] ${what}: ${now - last} ms (total ${now - t0} ms)`);
      last = now;
    };
    const A = () => {
      if (a === undefined) throw new Error('cluster A did not start');
      return a;
    };
    const B = () => {
      if (b === undefined) throw new Error('cluster B did not start');
      return b;
    };
    /** Each later test needs the walk-through done: fail at once rather than time out. */
    let walked = false;
    const walkedThrough = () => {
      if (!walked) throw new Error('the README walk-through did not complete (see the first test)');
    };

    beforeAll(async () => {
      t0 = Date.now();
      last = t0;
      lab = await createLab({
        relays: 1,
        sites: [
          { name: 'a', nat: run.nat, hosts: 1 },
          { name: 'b', nat: 'eim', hosts: 3 },
        ],
      });
      const theLab = lab;
      phase('lab');
      // README: peertunnel keygen > swarm.key (once, for both clusters).
      keyDir = await mkdtemp(join(tmpdir(), 'pt-e2e-key-'));
      const swarmKeyFile = join(keyDir, 'swarm.key');
      await writeFile(swarmKeyFile, execFileSync(process.execPath, [CLI, 'keygen']));
      const relayHost = theLab.relay(0);
      const bHosts = [0, 1, 2].map((i) => theLab.host('b', i));
      // B's relay pods on the lab's internet, its application pods in site b; one pod per host.
      const placeB = (pod: V1Pod, free: LabHost[]): LabHost | undefined =>
        isRelay(pod)
          ? free.find((h) => h.name === relayHost.name)
          : free.find((h) => h.name !== relayHost.name);
      const [cb, ca] = await Promise.allSettled([
        startCluster({ name: 'b', lab: theLab, nodes: [relayHost, ...bHosts], place: placeB, swarmKeyFile }),
        startCluster({ name: 'a', lab: theLab, nodes: [theLab.host('a', 0)], swarmKeyFile }),
      ]);
      if (cb.status === 'fulfilled') b = cb.value;
      if (ca.status === 'fulfilled') a = ca.value;
      if (cb.status === 'rejected') throw cb.reason;
      if (ca.status === 'rejected') throw ca.reason;
      phase('two clusters: control planes, helm install, operators, kubelets, namespace and Secret');
    }, 600_000);

    afterAll(async () => {
      const errors: unknown[] = [];
      for (const step of [
        () => prom?.stop(),
        () => a?.stop(),
        () => b?.stop(),
        () => lab?.stop(), // throws LabCleanupError when anything was left in the namespaces
      ]) {
        try {
          await step();
        } catch (err) {
          errors.push(err);
        }
      }
      if (keyDir !== '') await rm(keyDir, { recursive: true, force: true });
      phase('teardown');
      if (errors.length > 0) throw errors[0];
    }, 120_000);

    test('README walk-through: B first, its relay address into A, every pod Ready', async () => {
      const [ca, cb] = [A(), B()];
      // Cluster B: the network with its relay, then redis and its tunnel.
      await applyFile(cb, FILES.networkB);
      await labOnlyPublicRanges(cb, lab?.publicRanges ?? []);
      await waitNetworkReady(cb);
      await applyFile(cb, FILES.redisB);
      const relay = await relayAddress(cb);
      expect(relay).toMatch(/^\/ip4\/203\.0\.113\.10\/tcp\/4001\/p2p\/12D3KooW[1-9A-HJ-NP-Za-km-z]+$/);
      // The relay pod that runs with the lab's public ranges (the patch rolls it once).
      const relayPod = await cb.kubelet.waitForPod(
        APP_NS,
        (p) => isRelay(p) && JSON.stringify(p.spec?.containers?.[0]?.env ?? []).includes('publicRanges'),
        { ready: true, timeoutMs: 120_000 },
      );
      expect(relayPod.host.name).toBe(lab?.relay(0).name);
      redis0 = await cb.kubelet.waitForPod(APP_NS, app('redis'), { ready: true, timeoutMs: 120_000 });
      expect(await injected(cb, redis0)).toBe(true);
      phase('cluster B applied: relay and redis pods Ready');

      // Cluster A: the same network bootstrapped from B's relay, then the client and its tunnel.
      await applyNetworkA(ca, relay);
      await labOnlyPublicRanges(ca, lab?.publicRanges ?? []);
      await waitNetworkReady(ca);
      await applyFile(ca, FILES.clientA);
      client = await ca.kubelet.waitForPod(APP_NS, app('redis-client'), { ready: true, timeoutMs: 120_000 });
      expect(client.host.name).toBe(lab?.host('a', 0).name);
      expect(await injected(ca, client)).toBe(true);
      phase('cluster A applied: client pod Ready');
      walked = true;
    }, 300_000);

    test('a client in A uses redis in B through 127.0.0.1: benchmark, and keys read back in B', async () => {
      walkedThrough();
      // The first connection finds the exposer through the DHT; wait for the tunnel to answer.
      await eventually(
        'PONG through the tunnel',
        async () => {
          const r = await client.exec('client', [
            'timeout',
            '10',
            'redis-cli',
            '-h',
            '127.0.0.1',
            '-p',
            '6379',
            'PING',
          ]);
          return r.stdout.trim() === 'PONG' ? true : undefined;
        },
        90_000,
      );
      phase('first PONG through the tunnel');

      const bench = await benchmark(client, 'client', BENCH_REQUESTS);
      console.log(`[e2e ${run.nat}] redis-benchmark via the tunnel: ${JSON.stringify(bench.lines)}`);
      expect(bench.code).toBe(0);
      expect(bench.lines.map((l) => l.test).sort()).toEqual(['GET', 'SET']);
      for (const l of bench.lines) expect(l.rps).toBeGreaterThan(0);

      const suffix = randomBytes(4).toString('hex');
      const keys = new Map<string, string>();
      for (let i = 0; i < KEYS; i++) keys.set(`e2e:${run.nat}:${i}`, `value-${i}-${suffix}`);
      const written = await writeKeys(client, 'client', keys);
      expect({ errors: written.errors, replies: written.replies }).toEqual({ errors: 0, replies: KEYS });
      // On B's server directly (its own 127.0.0.1:6379, no tunnel): every key, with its value.
      const values = await readKeys(redis0, 'redis', [...keys.keys()]);
      expect(values).toEqual([...keys.values()]);
      phase(`workload: ${BENCH_REQUESTS} requests x2 benchmarked, ${KEYS} keys written in A and read in B`);
    }, 240_000);

    test(`kubectl get peertunnels: Ready in both clusters, 1 provider, path ${run.path}`, async () => {
      walkedThrough();
      const seen = await eventually(
        `A's tunnel Ready with 1 provider on a ${run.path} path`,
        async () => {
          const t = await getPeerTunnels(A());
          const r = row(t.rows, 'redis-client');
          return r?.READY === 'True' && r.PROVIDERS === '1' && r.PATH === run.path ? t : undefined;
        },
        60_000,
      ).catch(async (err: unknown) => {
        throw new Error(`${String(err)}\n${(await getPeerTunnels(A())).text}`);
      });
      const inB = await getPeerTunnels(B());
      console.log(`[e2e ${run.nat}] cluster A:\n${seen.text}\n[e2e ${run.nat}] cluster B:\n${inB.text}`);
      expect(Object.keys(seen.rows[0] ?? {})).toEqual(['NAME', 'READY', 'PODS', 'PROVIDERS', 'PATH', 'AGE']);
      expect(row(seen.rows, 'redis-client')).toMatchObject({
        READY: 'True',
        PODS: '1/1',
        PROVIDERS: '1',
        PATH: run.path,
      });
      // B's tunnel only exposes: no forward, hence no providers or path of its own.
      expect(row(inB.rows, 'redis')).toMatchObject({ READY: 'True', PODS: '1/1', PROVIDERS: '-', PATH: '-' });

      // Why the path is what it is, from both ends' metrics: behind the eim NAT a hole punch
      // succeeded; behind the symmetric one none did, the path is still relayed after the whole
      // workload, and the relay carried its bytes.
      const metrics = async (admin: string | undefined) =>
        (await fetch(`http://${admin ?? ''}/metrics`)).text();
      const punches = async (result: string) =>
        parseMetric(await metrics(client.admin), 'peertunnel_holepunch_attempts_total', { result }) +
        parseMetric(await metrics(redis0.admin), 'peertunnel_holepunch_attempts_total', { result });
      const relayPod = B()
        .kubelet.pods()
        .find((p) => p.name.startsWith('mesh-relay-0-'));
      const relayed = parseMetric(await metrics(relayPod?.admin), 'peertunnel_relay_relayed_bytes_total');
      console.log(
        `[e2e ${run.nat}] hole punches: success ${await punches('success')}, failure ${await punches('failure')}, gave up ${await punches('gave_up')}; relay carried ${relayed} bytes`,
      );
      if (run.path === 'hole-punched') {
        expect(await punches('success')).toBeGreaterThanOrEqual(1);
      } else {
        expect(await punches('success')).toBe(0);
        // 4 000 benchmark requests and 200 keys went through the relay, both ways.
        expect(relayed).toBeGreaterThan(4_000 * 20);
      }
      phase('peertunnels Ready in both clusters');
    }, 120_000);

    if (!run.full) return;

    test('Prometheus scrapes every sidecar of both clusters; every dashboard query has data', async () => {
      walkedThrough();
      const targets: ScrapeTarget[] = [];
      for (const c of [A(), B()]) {
        for (const p of c.kubelet.pods()) {
          if (p.admin === undefined) continue;
          targets.push({
            job: 'peertunnel-system/peertunnel-sidecars',
            address: p.admin,
            labels: { cluster: c.name, namespace: p.namespace, pod: p.name },
          });
        }
        targets.push({
          job: 'peertunnel-system/peertunnel-operator',
          address: c.operator.health,
          labels: { cluster: c.name, namespace: c.release.namespace },
        });
      }
      // Both clusters' pods: A's client, B's relay and redis.
      expect(
        targets
          .filter((t) => t.job.endsWith('sidecars'))
          .map((t) => t.labels.cluster)
          .sort(),
      ).toEqual(['a', 'b', 'b']);
      prom = await startPrometheus({ scrapeConfigs: staticScrapeConfigs(targets) });
      const p = prom;
      // Traffic while it scrapes every second, then a few more scrapes.
      for (let i = 0; i < 3; i++) {
        expect((await pingConnections(client, 'client', 5)).failed).toBe(0);
        await sleep(1_500);
      }
      await benchmark(client, 'client', 500);
      await sleep(3_000);
      const up = await p.query('up{job="peertunnel-system/peertunnel-sidecars"}');
      expect(up.map((s) => `${s.metric.cluster}/${s.metric.pod} ${s.value}`).sort()).toEqual(
        targets
          .filter((t) => t.job.endsWith('sidecars'))
          .map((t) => `${t.labels.cluster}/${t.labels.pod} 1`)
          .sort(),
      );
      const forwarded = await p.query(
        'sum by (cluster) (increase(peertunnel_streams_opened_total{service="redis"}[5m]))',
      );
      expect(forwarded.map((s) => s.metric.cluster).sort()).toEqual(['a', 'b']);

      // Empty for a reason, and only these: no UPnP/NAT-PMP gateway in this lab; no watch failed;
      // no stream failed and none was refused (the workload asserts exactly that); no member went
      // past its share of streams, reservations or DHT records; every exposed target answers.
      const allowedEmpty = new Set([
        'peertunnel-overview/Port mappings',
        'peertunnel-operator/Informer restarts',
        'peertunnel-services/Stream errors by reason',
        'peertunnel-services/Refused inbound streams',
        'peertunnel-services/Refused by limits',
        'peertunnel-services/Exposed targets refusing',
      ]);
      const empty: string[] = [];
      for (const q of allQueries()) {
        const expr = q.expr.replaceAll('$__rate_interval', '2m').replaceAll('$service', '.*');
        const result = await p.query(expr);
        if (result.length === 0) empty.push(`${q.dashboard}/${q.panel}`);
      }
      console.log(`[e2e ${run.nat}] dashboard panels without data (allowed): ${JSON.stringify(empty)}`);
      expect(empty.filter((e) => !allowedEmpty.has(e))).toEqual([]);
      phase('Prometheus: targets up, dashboard queries with data');
    }, 120_000);

    test('two redis pods in B share new connections; deleting one loses no new connection after 2 s', async () => {
      walkedThrough();
      const [ca, cb] = [A(), B()];
      await cb.kubectl(['-n', APP_NS, 'scale', 'deployment', 'redis', '--replicas=2']);
      const redis1 = await cb.kubelet.waitForPod(
        APP_NS,
        (p) => app('redis')(p) && p.metadata?.uid !== redis0.uid,
        { ready: true, timeoutMs: 120_000 },
      );
      expect(redis1.host.name).not.toBe(redis0.host.name);
      await eventually(
        "A's tunnel seeing 2 providers",
        async () =>
          row((await getPeerTunnels(ca)).rows, 'redis-client')?.PROVIDERS === '2' ? true : undefined,
        60_000,
      );
      phase('scaled to 2: second pod Ready, 2 providers in A');

      const before = [await connectionsReceived(redis0, 'redis'), await connectionsReceived(redis1, 'redis')];
      const spread = await pingConnections(client, 'client', NEW_CONNECTIONS);
      expect({ failed: spread.failed, output: spread.failed === 0 ? '' : spread.output }).toEqual({
        failed: 0,
        output: '',
      });
      const after = [await connectionsReceived(redis0, 'redis'), await connectionsReceived(redis1, 'redis')];
      // Minus the INFO connection of the "after" reading itself.
      const delta = after.map((n, i) => n - (before[i] ?? 0) - 1);
      console.log(
        `[e2e ${run.nat}] ${NEW_CONNECTIONS} new connections per redis server: ${JSON.stringify(delta)}`,
      );
      expect((delta[0] ?? 0) + (delta[1] ?? 0)).toBeGreaterThanOrEqual(NEW_CONNECTIONS);
      for (const d of delta) expect(d).toBeGreaterThanOrEqual(NEW_CONNECTIONS / 4);
      phase('connections spread over both pods');

      await cb.kubectl(['-n', APP_NS, 'delete', 'pod', redis0.name, '--wait=false']);
      await sleep(2_000);
      const failover = await pingConnections(client, 'client', NEW_CONNECTIONS);
      expect({ failed: failover.failed, output: failover.failed === 0 ? '' : failover.output }).toEqual({
        failed: 0,
        output: '',
      });
      const slow = failover.ms.filter((ms) => ms > 1_000);
      console.log(
        `[e2e ${run.nat}] after the deletion, connection times (ms): ${JSON.stringify(failover.ms)}; ${slow.length} over 1 s`,
      );
      // Why a connection waited: the forward's providers (failures, picks) and its provider events.
      console.log(
        `[e2e ${run.nat}] after the deletion, the forward's providers: ${JSON.stringify(await forwardProviders(client.admin))}`,
      );
      console.log(
        `[e2e ${run.nat}] after the deletion, the client sidecar's provider events:\n${providerEvents(client.output('peertunnel')).join('\n')}`,
      );
      phase(`pod deleted: ${NEW_CONNECTIONS} new connections 2 s later, none lost`);
    }, 300_000);
  });
});
