/**
 * The observability pieces checked with the real tools (Debian package `prometheus`):
 * - promtool check rules / test rules: the chart's alerts parse, and each alert fires when it
 *   should and stays silent when it should (test/fixtures/alerts/alerts.test.yaml).
 * - a real Prometheus (own temp config and TSDB, 127.0.0.1) scrapes a relay, an exposer, a
 *   forwarder and an operator during a traffic run, with the alert rules loaded; then every
 *   dashboard query is valid PromQL (the API answers success) and returns data, except the
 *   explicit allow-list below of panels that are legitimately empty on one loopback machine.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { allQueries } from '../../observability/dashboards.js';
import { describeWithControlPlane } from '../env/skip.js';
import { REPO_ROOT } from '../helpers/node-process.js';
import { type DataPlane, startDataPlane, startObservedOperator } from './observability-harness.js';
import { type OperatorProcess, operatorUsers } from './operator-harness.js';
import { PROMETHEUS, type Prometheus, startPrometheus } from './prometheus-server.js';

const run = promisify(execFile);
const PROMTOOL = process.env.PROMTOOL ?? '/usr/bin/promtool';
const ALERTS = join(REPO_ROOT, 'charts', 'peertunnel', 'files', 'alerts.yaml');
const ALERT_TESTS = join(REPO_ROOT, 'test', 'fixtures', 'alerts', 'alerts.test.yaml');

/**
 * Without the tools: a loud skip, except under CI=true (.ci/run installs the package), where the
 * missing binaries fail the tests.
 */
const haveTools = existsSync(PROMETHEUS) && existsSync(PROMTOOL);
if (!haveTools && process.env.CI !== 'true')
  console.warn(
    `\n${'!'.repeat(78)}\n!! SKIPPED: Prometheus/promtool tests: ${PROMETHEUS} or ${PROMTOOL} missing` +
      `\n!! apt-get install prometheus (the Debian package has both); CI=true makes this a failure.\n${'!'.repeat(78)}\n`,
  );
const describeTools = haveTools || process.env.CI === 'true' ? describe : describe.skip;

/**
 * Panels that stay empty in a standalone loopback run, each for a reason, and nothing else:
 * - hole punching: every node reaches every other directly on 127.0.0.1, so DCUtR never runs
 *   (moved in test/lab/holepunch.test.ts, behind real NAT);
 * - port mappings: there is no UPnP/NAT-PMP gateway (test/lab/port-mapping.test.ts);
 * - informer restarts: usually no watch fails in this run (sometimes one restarts at start-up).
 */
const ALLOWED_EMPTY = new Set([
  'peertunnel-overview/Hole punch success ratio',
  'peertunnel-overview/Hole punch attempts',
  'peertunnel-overview/Port mappings',
  'peertunnel-operator/Informer restarts',
  // Its stream refusals have data (the refused probe); no member here goes past its share of
  // relay reservations or DHT records, and reservations are dropped only when a member leaves.
  'peertunnel-services/Refused by limits',
  // These nodes run an open network (no trust section): nobody asks the operator for a credential;
  // test/integration/operator-credentials.test.ts moves those counters.
  'peertunnel-operator/Workload credentials',
]);

/** Grafana's variables, as Grafana would expand them here (1 s scrapes: 4 intervals plus margin). */
function expand(expr: string): string {
  return expr.replaceAll('$__rate_interval', '15s').replaceAll('$service', '.*');
}

describeTools('alert rules with promtool', () => {
  it('pass promtool check rules', async () => {
    const { stdout } = await run(PROMTOOL, ['check', 'rules', ALERTS]);
    expect(stdout).toMatch(/SUCCESS: 7 rules found/);
  });

  it('pass their promtool unit tests: each alert fires when it should and stays silent when it should', async () => {
    const { stdout } = await run(PROMTOOL, ['test', 'rules', ALERT_TESTS]);
    expect(stdout).toMatch(/SUCCESS/);
  });

  it('have a unit test for every alert, both firing and silent', async () => {
    const { parse } = await import('yaml');
    const { readFile } = await import('node:fs/promises');
    const rules = parse(await readFile(ALERTS, 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string }> }>;
    };
    const tests = parse(await readFile(ALERT_TESTS, 'utf8')) as {
      tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test);
    for (const alert of rules.groups.flatMap((g) => g.rules.map((r) => r.alert))) {
      const mine = cases.filter((c) => c.alertname === alert);
      expect({ alert, fires: mine.some((c) => c.exp_alerts.length > 0) }).toEqual({ alert, fires: true });
      expect({ alert, silent: mine.some((c) => c.exp_alerts.length === 0) }).toEqual({ alert, silent: true });
    }
  });
});

interface ApiResponse<T> {
  status: 'success' | 'error';
  error?: string;
  errorType?: string;
  data: T;
}
interface VectorData {
  resultType: string;
  result: Array<{ metric: Record<string, string>; value: [number, string] }>;
}

const describeScrape: typeof describeWithControlPlane =
  haveTools || process.env.CI === 'true' ? describeWithControlPlane : (name) => describe.skip(name, () => {});

describeScrape(
  'a real Prometheus scraping nodes and the operator during a traffic run',
  (env) => {
    let dp: DataPlane;
    let op: OperatorProcess;
    let prom: Prometheus | undefined;
    const get = <T>(path: string, params: Record<string, string> = {}): Promise<ApiResponse<T>> => {
      if (prom === undefined) throw new Error('Prometheus did not start');
      return prom.get<ApiResponse<T>>(path, params);
    };

    beforeAll(async () => {
      const t0 = Date.now();
      const lap = (what: string) => {
        if (process.env.PEERTUNNEL_TEST_TIMING === '1') console.log(`${what}: ${Date.now() - t0} ms`);
      };
      [dp, op] = await Promise.all([startDataPlane(), startObservedOperator(env.cp)]);
      lap('nodes and operator up');
      prom = await startPrometheus({
        ruleFiles: [ALERTS],
        scrapeConfigs: [
          {
            job_name: 'peertunnel-node',
            static_configs: [{ targets: [dp.relay.admin, dp.exposer.admin, dp.forwarder.admin] }],
          },
          { job_name: 'peertunnel-operator', static_configs: [{ targets: [op.health] }] },
        ],
      });
      lap('Prometheus ready');
      // Traffic while Prometheus scrapes every second: the failing streams (~10 s) and, meanwhile,
      // rounds of working traffic; then one more round and at least two more scrapes of every target.
      await Promise.all([
        dp.drive(),
        (async () => {
          for (let i = 0; i < 4; i++) {
            await dp.traffic();
            await new Promise((r) => setTimeout(r, 1_500));
          }
        })(),
      ]);
      await dp.traffic();
      // The dead target's exposer withdraws the name after its first refusal and the forwarder
      // drops it as a provider: wait for that to settle, then for two more scrapes.
      const settleBy = Date.now() + 30_000;
      while ((await dp.forwarder.metric('peertunnel_forward_providers', { service: 'dead' })) !== 0) {
        if (Date.now() > settleBy) throw new Error('the dead forward kept its provider for 30 s');
        await new Promise((r) => setTimeout(r, 250));
      }
      await new Promise((r) => setTimeout(r, 2_500));
      lap('traffic done');
    }, 120_000);

    afterAll(async () => {
      await prom?.stop();
      await Promise.allSettled([dp?.stop(), op?.stop()]);
    });

    it('scrapes all four targets', async () => {
      const r = await get<VectorData>('/api/v1/query', { query: 'up' });
      expect(r.status).toBe('success');
      const up = r.data.result.map((s) => `${s.metric.job} ${s.value[1]}`).sort();
      expect(up).toEqual([
        'peertunnel-node 1',
        'peertunnel-node 1',
        'peertunnel-node 1',
        'peertunnel-operator 1',
      ]);
    });

    it('runs every dashboard query as valid PromQL, and each returns data (but the allow-listed)', async () => {
      const empty: string[] = [];
      for (const q of allQueries()) {
        const r = await get<VectorData>('/api/v1/query', { query: expand(q.expr) });
        const where = `${q.dashboard}/${q.panel}`;
        expect({ where, refId: q.refId, status: r.status, error: r.error }).toEqual({
          where,
          refId: q.refId,
          status: 'success',
          error: undefined,
        });
        if (r.data.result.length === 0) empty.push(where);
      }
      // Only allow-listed panels may be empty (informer restarts does show data when a watch
      // happened to restart during the run).
      expect([...new Set(empty)].filter((p) => !ALLOWED_EMPTY.has(p))).toEqual([]);
    });

    it('shows the traffic in the dashboard queries (throughput, latency, errors, no provider)', async () => {
      const q = async (expr: string) =>
        (await get<VectorData>('/api/v1/query', { query: expr })).data.result.map(
          (s) => [s.metric, Number(s.value[1])] as const,
        );
      const bytes = await q(
        'sum by (service) (increase(peertunnel_stream_bytes_total{side="forward",direction="sent"}[1m]))',
      );
      expect(bytes.find(([m]) => m.service === 'sink')?.[1]).toBeGreaterThan(8 * 1024 * 1024);
      const p99 = await q(
        'histogram_quantile(0.99, sum by (le) (rate(peertunnel_stream_open_duration_seconds_bucket{service="echo"}[1m])))',
      );
      expect(p99[0]?.[1]).toBeGreaterThan(0);
      expect(p99[0]?.[1]).toBeLessThan(10);
      const failed = await q('sum by (service, reason) (increase(peertunnel_streams_failed_total[1m]))');
      expect(failed.find(([m]) => m.service === 'ghost')?.[0].reason).toBe('no_provider');
      // ghost never had one; dead's exposer withdrew the name while its target refuses.
      const noProvider = await q('count(peertunnel_forward_providers == 0)');
      expect(noProvider[0]?.[1]).toBe(2);
      expect((await q('sum(peertunnel_operator_leader)'))[0]?.[1]).toBe(1);
    });

    it('loads the alert rules, with the ghost and dead forwards pending as having no provider, the exposer of a refusing target as not ready, and nothing else', async () => {
      const rules = await get<{ groups: Array<{ rules: Array<{ name: string; health: string }> }> }>(
        '/api/v1/rules',
      );
      const all = rules.data.groups.flatMap((g) => g.rules);
      expect(all).toHaveLength(7);
      expect(all.filter((r) => r.health !== 'ok')).toEqual([]);
      const expected = [
        'PeerTunnelForwardNoProvider dead pending',
        'PeerTunnelForwardNoProvider ghost pending',
        'PeerTunnelSidecarNotReady  pending',
      ];
      // Rules are evaluated on their own clock: poll (bounded) until the set is complete.
      let seen: string[] = [];
      for (const until = Date.now() + 20_000; Date.now() < until; ) {
        const alerts = await get<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>(
          '/api/v1/alerts',
        );
        seen = alerts.data.alerts
          .map((a) => `${a.labels.alertname} ${a.labels.service ?? ''} ${a.state}`)
          .sort();
        if (seen.length >= expected.length) break;
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(seen).toEqual(expected);
    });
  },
  { users: operatorUsers },
);
