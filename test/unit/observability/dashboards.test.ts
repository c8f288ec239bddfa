/**
 * The chart's Grafana dashboards: the committed JSON is exactly the generator's output, every panel
 * and query uses the `${datasource}` variable, and every query names only metric families that the
 * sidecar and operator really register (test/integration/prometheus.test.ts runs them for real).
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { Registry } from 'prom-client';
import { allQueries, DASHBOARDS, renderDashboards } from '../../../observability/dashboards.js';
import { createOperatorMetrics } from '../../../operator/metrics.js';
import { createSidecarMetrics } from '../../../sidecar/admin/metrics.js';
import { REPO_ROOT } from '../../helpers/node-process.js';

const DIR = join(REPO_ROOT, 'charts', 'peertunnel', 'dashboards');
/** Grafana's `${datasource}` variable (a Grafana placeholder, not a JS template). */
const DATASOURCE = `$${'{datasource}'}`;

interface GrafanaTarget {
  datasource: { type: string; uid: string };
  expr: string;
  refId: string;
}
interface GrafanaPanel {
  id: number;
  title: string;
  datasource: { type: string; uid: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets: GrafanaTarget[];
}
interface GrafanaDashboard {
  uid: string;
  templating: { list: Array<{ name: string; type: string; query: unknown }> };
  panels: GrafanaPanel[];
}

/** Family name → the sample names it exposes (histograms: _bucket, _sum, _count). */
async function families(): Promise<Map<string, string>> {
  const sidecar = new Registry();
  createSidecarMetrics(sidecar);
  const operator = new Registry();
  createOperatorMetrics(operator);
  const out = new Map<string, string>();
  for (const r of [sidecar, operator]) {
    for (const m of await r.getMetricsAsJSON()) {
      out.set(m.name, m.name);
      if (String(m.type) === 'histogram')
        for (const s of ['_bucket', '_sum', '_count']) out.set(`${m.name}${s}`, m.name);
    }
  }
  return out;
}

/** Families deliberately left off the dashboards (visible in /metrics and /status). */
const NOT_CHARTED = [
  'peertunnel_dht_provides_total',
  'peertunnel_port_mapping_operations_total',
  // Moves only when a sidecar of another version breaks the /status contract; the operator logs
  // each one (sidecar_status_invalid) and the tunnel's condition says its sidecars are unreadable.
  'peertunnel_operator_sidecar_status_invalid_total',
  'peertunnel_admin_refused_total',
  'peertunnel_operator_http_refused_total',
  'peertunnel_operator_status_poll_failures_total',
  // Trust refusals and revocations: in /status (recent refusals) and the logs; charted with the
  // operator's trust status later.
  'peertunnel_trust_refused_total',
  'peertunnel_trust_revoked_total',
  'peertunnel_credential_expiry_timestamp_seconds',
  // A sidecar that cannot ask its operator for the trusted clusters keeps its list: the logs
  // (trust_sync_failed) say so; the operator's own panels show it down.
  'peertunnel_trust_sync_failures_total',
];

describe('Grafana dashboards', () => {
  it('are committed exactly as observability/dashboards.ts generates them', async () => {
    const rendered = renderDashboards();
    const files = (await readdir(DIR)).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual([...rendered.keys()].sort());
    for (const [file, text] of rendered) {
      // If this fails: npm run build && node dist/observability/generate.js
      expect({ file, text: await readFile(join(DIR, file), 'utf8') }).toEqual({ file, text });
    }
  });

  it('use a prometheus datasource variable on every panel and query, with unique ids inside 24 columns', async () => {
    for (const d of DASHBOARDS) {
      const json = JSON.parse(await readFile(join(DIR, d.file), 'utf8')) as GrafanaDashboard;
      const ds = json.templating.list.find((v) => v.name === 'datasource');
      expect(ds).toMatchObject({ type: 'datasource', query: 'prometheus' });
      expect(json.panels.length).toBeGreaterThan(0);
      expect(new Set(json.panels.map((p) => p.id)).size).toBe(json.panels.length);
      for (const p of json.panels) {
        expect({ panel: p.title, ds: p.datasource }).toEqual({
          panel: p.title,
          ds: { type: 'prometheus', uid: DATASOURCE },
        });
        expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
        expect(p.targets.length).toBeGreaterThan(0);
        for (const t of p.targets) {
          expect(t.datasource.uid).toBe(DATASOURCE);
          expect(t.expr.length).toBeGreaterThan(0);
        }
      }
      // Variables used in queries are defined (besides Grafana's own $__ ones).
      const defined = new Set(json.templating.list.map((v) => v.name));
      for (const p of json.panels)
        for (const t of p.targets)
          for (const [, name] of t.expr.matchAll(/\$([a-zA-Z_]\w*)/g))
            if (!name?.startsWith('__'))
              expect({ expr: t.expr, defined: defined.has(name ?? '') }).toEqual({
                expr: t.expr,
                defined: true,
              });
    }
  });

  it('query only metric families the sidecar and operator register, and chart all but a listed few', async () => {
    const known = await families();
    const used = new Set<string>();
    for (const q of allQueries()) {
      const names = [...q.expr.matchAll(/\bpeertunnel_[a-z0-9_]+/g)].map((m) => m[0]);
      expect(names.length).toBeGreaterThan(0);
      for (const n of names) {
        expect({ panel: q.panel, metric: n, known: known.has(n) }).toEqual({
          panel: q.panel,
          metric: n,
          known: true,
        });
        used.add(known.get(n) ?? n);
      }
    }
    const uncharted = [...new Set(known.values())].filter((f) => !used.has(f)).sort();
    expect(uncharted).toEqual([...NOT_CHARTED].sort());
  });

  it('cover what each dashboard is for: overview, services, operator', () => {
    const titles = (uid: string) => DASHBOARDS.find((d) => d.uid === uid)?.panels.map((p) => p.title) ?? [];
    expect(titles('peertunnel-overview')).toEqual(
      expect.arrayContaining([
        'Ready nodes',
        'Peers connected per node',
        'Path mix now',
        'Hole punch success ratio',
        'Relay reservations',
      ]),
    );
    expect(titles('peertunnel-services')).toEqual(
      expect.arrayContaining([
        'Throughput per service',
        'Active streams',
        'Stream open latency',
        'Stream errors by reason',
        'Forwards with no provider',
      ]),
    );
    expect(titles('peertunnel-operator')).toEqual(
      expect.arrayContaining(['Reconciles', 'Webhook latency', 'Work queue depth', 'Leader']),
    );
    const latency = DASHBOARDS.flatMap((d) => d.panels).find((p) => p.title === 'Stream open latency');
    expect(latency?.targets.map((t) => t.expr.slice(0, 24))).toEqual([
      'histogram_quantile(0.5, ',
      'histogram_quantile(0.99,',
    ]);
  });
});
