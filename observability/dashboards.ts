/**
 * Over 300 lines on purpose: each panel of the three dashboards is data here, kept in dashboard order.
 *
 * The Grafana dashboards the chart ships (charts/peertunnel/dashboards/*.json), written as code.
 * `node dist/observability/generate.js` writes the JSON files; test/unit/observability/dashboards.test.ts checks
 * that the committed files equal this output and that every query names a real metric family, and
 * test/integration/prometheus.test.ts runs every query against a real Prometheus.
 *
 * The data source is a `${datasource}` template variable of type prometheus, so the dashboards
 * work with whatever the Grafana instance calls its Prometheus.
 */

export interface Target {
  refId: string;
  expr: string;
  legendFormat?: string;
  instant?: boolean;
}

export interface Panel {
  id: number;
  type: 'timeseries' | 'stat' | 'piechart' | 'table';
  title: string;
  description: string;
  gridPos: { x: number; y: number; w: number; h: number };
  targets: Target[];
  unit?: string;
  stacked?: boolean;
  thresholds?: Array<{ value: number | null; color: string }>;
}

export interface DashboardSpec {
  file: string;
  uid: string;
  title: string;
  description: string;
  /** Template variables beyond the datasource: name → label_values() query. */
  variables?: Array<{ name: string; label: string; query: string }>;
  panels: Panel[];
}

/** The `${datasource}` variable, a Grafana placeholder (not a JS template). */
const DS = { type: 'prometheus', uid: `$${'{datasource}'}` } as const;
/** Grafana replaces this per panel with a window of at least four scrape intervals. */
const RI = '$__rate_interval';

type PanelInput = Omit<Panel, 'id' | 'gridPos' | 'targets'> & {
  w: number;
  h?: number;
  targets: Array<Omit<Target, 'refId'>>;
};

/** Lays panels out left to right in rows of 24 columns, numbering ids and refIds. */
function layout(inputs: PanelInput[]): Panel[] {
  let x = 0;
  let y = 0;
  let rowHeight = 0;
  return inputs.map((p, i) => {
    const h = p.h ?? 8;
    if (x + p.w > 24) {
      x = 0;
      y += rowHeight;
      rowHeight = 0;
    }
    const { w: _w, h: _h, targets, ...rest } = p;
    const panel: Panel = {
      ...rest,
      id: i + 1,
      gridPos: { x, y, w: p.w, h },
      targets: targets.map((t, j) => ({ refId: String.fromCharCode(65 + j), ...t })),
    };
    x += p.w;
    rowHeight = Math.max(rowHeight, h);
    return panel;
  });
}

const BAD_IF_ABOVE_ZERO = [
  { value: null, color: 'green' },
  { value: 1, color: 'red' },
];

export const overview: DashboardSpec = {
  file: 'peertunnel-overview.json',
  uid: 'peertunnel-overview',
  title: 'PeerTunnel / Overview',
  description: 'Network health: ready nodes, peers, connection paths, hole punching, relays, DHT.',
  panels: layout([
    {
      type: 'stat',
      title: 'Ready nodes',
      description: 'Sidecars and relays whose /readyz answers 200 (connected, every forward listening).',
      w: 4,
      h: 5,
      targets: [{ expr: 'sum(peertunnel_ready)', instant: true }],
    },
    {
      type: 'stat',
      title: 'Not ready nodes',
      description: 'Nodes that are up but not ready: no network peer, or a forward that cannot listen.',
      w: 4,
      h: 5,
      thresholds: BAD_IF_ABOVE_ZERO,
      targets: [{ expr: 'sum(1 - peertunnel_ready)', instant: true }],
    },
    {
      type: 'stat',
      title: 'Nodes by role',
      description: 'Running nodes, from peertunnel_build_info.',
      w: 4,
      h: 5,
      targets: [{ expr: 'count by (role) (peertunnel_build_info)', legendFormat: '{{role}}', instant: true }],
    },
    {
      type: 'stat',
      title: 'Forwards with no provider',
      description: 'Forwarded services that have nowhere to go (disconnected, not idle).',
      w: 4,
      h: 5,
      thresholds: BAD_IF_ABOVE_ZERO,
      targets: [{ expr: 'count(peertunnel_forward_providers == 0) or vector(0)', instant: true }],
    },
    {
      type: 'piechart',
      title: 'Path mix now',
      description: 'Open connections by path: direct, hole_punched, relayed, port_mapped.',
      w: 8,
      h: 5,
      targets: [{ expr: 'sum by (path) (peertunnel_connections)', legendFormat: '{{path}}', instant: true }],
    },
    {
      type: 'timeseries',
      title: 'Connections by path',
      description:
        'Open libp2p connections over time, by path. Relayed connections that stay are sites stuck behind the relay.',
      w: 12,
      stacked: true,
      targets: [{ expr: 'sum by (path) (peertunnel_connections)', legendFormat: '{{path}}' }],
    },
    {
      type: 'timeseries',
      title: 'Peers connected per node',
      description: 'Network peers with an open connection, per node.',
      w: 12,
      targets: [{ expr: 'peertunnel_peers_connected', legendFormat: '{{instance}}' }],
    },
    {
      type: 'timeseries',
      title: 'Hole punch success ratio',
      description: 'Share of DCUtR attempts that ended in a direct connection.',
      w: 8,
      unit: 'percentunit',
      targets: [
        {
          expr: `sum(rate(peertunnel_holepunch_attempts_total{result="success"}[${RI}])) / sum(rate(peertunnel_holepunch_attempts_total[${RI}]))`,
          legendFormat: 'success ratio',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Hole punch attempts',
      description: 'DCUtR attempts per second by result (success, failure, gave_up).',
      w: 8,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (result) (rate(peertunnel_holepunch_attempts_total[${RI}]))`,
          legendFormat: '{{result}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Relay reservations',
      description: 'Reservations held by sidecars (active) and served by relays (serving).',
      w: 8,
      targets: [{ expr: 'sum by (state) (peertunnel_relay_reservations)', legendFormat: '{{state}}' }],
    },
    {
      type: 'timeseries',
      title: 'Bytes relayed',
      description: 'Bytes relays carry on circuit streams for other peers.',
      w: 8,
      unit: 'Bps',
      targets: [
        {
          expr: `sum by (instance) (rate(peertunnel_relay_relayed_bytes_total[${RI}]))`,
          legendFormat: '{{instance}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Reachability',
      description: 'Nodes by how others see them: public, private, unknown.',
      w: 8,
      stacked: true,
      targets: [{ expr: 'sum by (state) (peertunnel_reachability)', legendFormat: '{{state}}' }],
    },
    {
      type: 'timeseries',
      title: 'Port mappings',
      description: 'NAT gateway port mappings held (active) or failing (failed), by protocol.',
      w: 8,
      targets: [
        {
          expr: 'sum by (protocol, state) (peertunnel_port_mappings)',
          legendFormat: '{{protocol}} {{state}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'DHT lookups',
      description: 'Provider lookups per second, by result (found, empty, error).',
      w: 12,
      unit: 'ops',
      targets: [
        { expr: `sum by (result) (rate(peertunnel_dht_lookups_total[${RI}]))`, legendFormat: '{{result}}' },
      ],
    },
    {
      type: 'timeseries',
      title: 'DHT lookup latency',
      description: 'p50 and p99 of provider lookup duration.',
      w: 12,
      unit: 's',
      targets: [
        {
          expr: `histogram_quantile(0.5, sum by (le) (rate(peertunnel_dht_lookup_duration_seconds_bucket[${RI}])))`,
          legendFormat: 'p50',
        },
        {
          expr: `histogram_quantile(0.99, sum by (le) (rate(peertunnel_dht_lookup_duration_seconds_bucket[${RI}])))`,
          legendFormat: 'p99',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Refused inbound connections',
      description:
        'Connections refused before the private-network handshake, by reason (rate per address, pending per address, nonce deadline, swarm key: first bytes under no key of the node): a source without the key probing or flooding the port.',
      w: 24,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (reason) (rate(peertunnel_inbound_refused_total[${RI}]))`,
          legendFormat: '{{reason}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Connections by swarm key',
      description:
        'During a key rollover: open connections under the current and the next key, and dials that fell back from the next key to the current one. The old key may go once no connection uses it (PeerNetwork status.swarmKeyRollover).',
      w: 24,
      targets: [
        { expr: 'sum by (swarm_key) (peertunnel_connections_by_swarm_key)', legendFormat: '{{swarm_key}}' },
        {
          expr: `sum(rate(peertunnel_swarm_key_fallbacks_total[${RI}]))`,
          legendFormat: 'fallbacks/s',
        },
      ],
    },
  ]),
};

const SVC = 'service=~"$service"';

export const services: DashboardSpec = {
  file: 'peertunnel-services.json',
  uid: 'peertunnel-services',
  title: 'PeerTunnel / Service traffic',
  description:
    'Per service: throughput, streams, stream open latency, errors, and forwards with no provider.',
  variables: [
    { name: 'service', label: 'Service', query: 'label_values(peertunnel_streams_opened_total, service)' },
  ],
  panels: layout([
    {
      type: 'table',
      title: 'Providers per forward',
      description:
        'Providers known for each forwarded service: 0 means the forward is disconnected, not idle.',
      w: 12,
      h: 7,
      thresholds: [
        { value: null, color: 'red' },
        { value: 1, color: 'green' },
      ],
      targets: [
        {
          expr: `min by (service) (peertunnel_forward_providers{${SVC}})`,
          legendFormat: '{{service}}',
          instant: true,
        },
      ],
    },
    {
      type: 'stat',
      title: 'Forwards with no provider',
      description: 'Forwards (per node) that have no provider at all.',
      w: 6,
      h: 7,
      thresholds: BAD_IF_ABOVE_ZERO,
      targets: [{ expr: `count(peertunnel_forward_providers{${SVC}} == 0) or vector(0)`, instant: true }],
    },
    {
      type: 'stat',
      title: 'Forward listeners down',
      description: 'Forwards whose local listener is not bound.',
      w: 6,
      h: 7,
      thresholds: BAD_IF_ABOVE_ZERO,
      targets: [{ expr: `count(peertunnel_forward_listener_up{${SVC}} == 0) or vector(0)`, instant: true }],
    },
    {
      type: 'timeseries',
      title: 'Throughput per service',
      description: 'Bytes per second through forwards, sent to and received from the network.',
      w: 12,
      unit: 'Bps',
      targets: [
        {
          expr: `sum by (service, direction) (rate(peertunnel_stream_bytes_total{side="forward", ${SVC}}[${RI}]))`,
          legendFormat: '{{service}} {{direction}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Active streams',
      description: 'Tunnel streams open now (one per forwarded TCP connection), by service and side.',
      w: 12,
      targets: [
        {
          expr: `sum by (service, side) (peertunnel_streams_active{${SVC}})`,
          legendFormat: '{{service}} {{side}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Streams opened',
      description: 'New tunnel streams per second, by service and side.',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (service, side) (rate(peertunnel_streams_opened_total{${SVC}}[${RI}]))`,
          legendFormat: '{{service}} {{side}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Stream open latency',
      description: 'From accepting a local TCP connection to an open stream at a provider: p50 and p99.',
      w: 12,
      unit: 's',
      targets: [
        {
          expr: `histogram_quantile(0.5, sum by (service, le) (rate(peertunnel_stream_open_duration_seconds_bucket{${SVC}}[${RI}])))`,
          legendFormat: '{{service}} p50',
        },
        {
          expr: `histogram_quantile(0.99, sum by (service, le) (rate(peertunnel_stream_open_duration_seconds_bucket{${SVC}}[${RI}])))`,
          legendFormat: '{{service}} p99',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Stream errors by reason',
      description:
        'Failed streams per second by service, side and reason (no_provider, dial_failed, refused, ...).',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (service, side, reason) (rate(peertunnel_streams_failed_total{${SVC}}[${RI}]))`,
          legendFormat: '{{service}} {{side}} {{reason}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Refused by limits',
      description:
        "What members asked for and did not get: streams for a name not exposed or beyond a peer's or the node's share, relay reservations beyond an address's share (and reservations dropped on disconnect), DHT records beyond a peer's share.",
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (reason) (rate(peertunnel_streams_refused_total[${RI}]))`,
          legendFormat: 'stream {{reason}}',
        },
        {
          expr: `sum by (reason) (rate(peertunnel_relay_reservations_refused_total[${RI}]))`,
          legendFormat: 'reservation {{reason}}',
        },
        {
          expr: `sum by (reason) (rate(peertunnel_relay_reservations_dropped_total[${RI}]))`,
          legendFormat: 'reservation dropped {{reason}}',
        },
        {
          expr: `sum by (reason) (rate(peertunnel_dht_records_refused_total[${RI}]))`,
          legendFormat: 'DHT record {{reason}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Exposed targets refusing',
      description: 'Exposed services whose local target refuses connections: not announced meanwhile.',
      w: 12,
      unit: 'short',
      targets: [
        {
          expr: 'count by (service) (peertunnel_expose_target_up == 0)',
          legendFormat: '{{service}}',
        },
      ],
    },
  ]),
};

export const operator: DashboardSpec = {
  file: 'peertunnel-operator.json',
  uid: 'peertunnel-operator',
  title: 'PeerTunnel / Operator',
  description: 'The operator: leader, reconciles, work queue, admission webhook, injected pods.',
  panels: layout([
    {
      type: 'stat',
      title: 'Leader',
      description: 'Replicas that hold the Lease: exactly 1 is healthy.',
      w: 6,
      h: 5,
      thresholds: [
        { value: null, color: 'red' },
        { value: 1, color: 'green' },
        { value: 2, color: 'red' },
      ],
      targets: [{ expr: 'sum(peertunnel_operator_leader)', instant: true }],
    },
    {
      type: 'stat',
      title: 'Injected pods',
      description: 'Pods (not finished) that carry the sidecar.',
      w: 6,
      h: 5,
      targets: [{ expr: 'max(peertunnel_operator_injected_pods)', instant: true }],
    },
    {
      type: 'stat',
      title: 'Queue depth',
      description: 'Keys waiting in the work queues.',
      w: 6,
      h: 5,
      targets: [{ expr: 'sum(peertunnel_operator_queue_depth)', instant: true }],
    },
    {
      type: 'stat',
      title: 'Webhook errors (1h)',
      description: 'Admission requests that failed (the pod was admitted without a sidecar).',
      w: 6,
      h: 5,
      thresholds: BAD_IF_ABOVE_ZERO,
      targets: [
        {
          expr: 'sum(increase(peertunnel_operator_webhook_requests_total{result="error"}[1h])) or vector(0)',
          instant: true,
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Leader by replica',
      description: '1 while a replica holds the Lease and runs the controllers.',
      w: 12,
      targets: [{ expr: 'peertunnel_operator_leader', legendFormat: '{{instance}}' }],
    },
    {
      type: 'timeseries',
      title: 'Work queue depth',
      description: 'Keys waiting per kind (not counting ones waiting out a backoff).',
      w: 12,
      targets: [{ expr: 'sum by (kind) (peertunnel_operator_queue_depth)', legendFormat: '{{kind}}' }],
    },
    {
      type: 'timeseries',
      title: 'Reconciles',
      description: 'Reconciles per second by kind and result.',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (kind, result) (rate(peertunnel_operator_reconciles_total[${RI}]))`,
          legendFormat: '{{kind}} {{result}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Reconcile latency',
      description: 'p50 and p99 of one reconcile, by kind.',
      w: 12,
      unit: 's',
      targets: [
        {
          expr: `histogram_quantile(0.5, sum by (kind, le) (rate(peertunnel_operator_reconcile_duration_seconds_bucket[${RI}])))`,
          legendFormat: '{{kind}} p50',
        },
        {
          expr: `histogram_quantile(0.99, sum by (kind, le) (rate(peertunnel_operator_reconcile_duration_seconds_bucket[${RI}])))`,
          legendFormat: '{{kind}} p99',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Webhook requests',
      description: 'Admission requests per second by result (injected, skipped, error) and skip reason.',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (result, reason) (rate(peertunnel_operator_webhook_requests_total[${RI}]))`,
          legendFormat: '{{result}} {{reason}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Webhook latency',
      description: 'p50 and p99 of answering one admission request.',
      w: 12,
      unit: 's',
      targets: [
        {
          expr: `histogram_quantile(0.5, sum by (le) (rate(peertunnel_operator_webhook_duration_seconds_bucket[${RI}])))`,
          legendFormat: 'p50',
        },
        {
          expr: `histogram_quantile(0.99, sum by (le) (rate(peertunnel_operator_webhook_duration_seconds_bucket[${RI}])))`,
          legendFormat: 'p99',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Workload credentials',
      description:
        'Credentials issued to sidecars per second, and requests refused by reason (token_invalid, pod_gone, bad_proof, no_tunnel, rate_limited...).',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum(rate(peertunnel_operator_credentials_issued_total[${RI}]))`,
          legendFormat: 'issued',
        },
        {
          expr: `sum by (reason) (rate(peertunnel_operator_credentials_refused_total[${RI}]))`,
          legendFormat: 'refused {{reason}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Status writes',
      description: 'Status updates written per second, by kind (only when a status changed).',
      w: 12,
      unit: 'ops',
      targets: [
        {
          expr: `sum by (kind) (rate(peertunnel_operator_status_writes_total[${RI}]))`,
          legendFormat: '{{kind}}',
        },
      ],
    },
    {
      type: 'timeseries',
      title: 'Informer restarts',
      description: 'Informers restarted after a watch or list failure, by resource.',
      w: 12,
      targets: [
        {
          expr: 'sum by (resource) (increase(peertunnel_operator_informer_restarts_total[1h]))',
          legendFormat: '{{resource}}',
        },
      ],
    },
  ]),
};

export const DASHBOARDS: readonly DashboardSpec[] = [overview, services, operator];

/** Every query of every dashboard, for tests. */
export function allQueries(): Array<{ dashboard: string; panel: string; refId: string; expr: string }> {
  return DASHBOARDS.flatMap((d) =>
    d.panels.flatMap((p) =>
      p.targets.map((t) => ({ dashboard: d.uid, panel: p.title, refId: t.refId, expr: t.expr })),
    ),
  );
}

function fieldConfig(p: Panel): object {
  return {
    defaults: {
      ...(p.unit === undefined ? {} : { unit: p.unit }),
      ...(p.thresholds === undefined
        ? {}
        : { thresholds: { mode: 'absolute', steps: p.thresholds }, color: { mode: 'thresholds' } }),
      ...(p.type === 'timeseries'
        ? {
            custom: {
              drawStyle: 'line',
              fillOpacity: p.stacked === true ? 30 : 10,
              stacking: { mode: p.stacked === true ? 'normal' : 'none', group: 'A' },
              showPoints: 'never',
            },
          }
        : {}),
    },
    overrides: [],
  };
}

function options(p: Panel): object {
  switch (p.type) {
    case 'stat':
      return {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        colorMode: 'value',
        graphMode: 'none',
        textMode: 'auto',
      };
    case 'piechart':
      return {
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
        legend: { displayMode: 'table', placement: 'right', values: ['value'] },
        pieType: 'donut',
      };
    case 'table':
      return { showHeader: true };
    default:
      return {
        legend: { displayMode: 'list', placement: 'bottom' },
        tooltip: { mode: 'multi', sort: 'desc' },
      };
  }
}

/** The Grafana dashboard JSON model of one spec. */
export function toGrafana(d: DashboardSpec): object {
  return {
    uid: d.uid,
    title: d.title,
    description: d.description,
    tags: ['peertunnel'],
    editable: true,
    graphTooltip: 1,
    schemaVersion: 39,
    version: 1,
    time: { from: 'now-1h', to: 'now' },
    refresh: '30s',
    timezone: '',
    annotations: { list: [] },
    links: [],
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
          refresh: 1,
          regex: '',
          options: [],
        },
        ...(d.variables ?? []).map((v) => ({
          name: v.name,
          label: v.label,
          type: 'query',
          datasource: DS,
          query: { query: v.query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
          definition: v.query,
          refresh: 2,
          includeAll: true,
          multi: true,
          allValue: '.*',
          current: { selected: true, text: ['All'], value: ['$__all'] },
          hide: 0,
          sort: 1,
          options: [],
        })),
      ],
    },
    panels: d.panels.map((p) => ({
      id: p.id,
      type: p.type,
      title: p.title,
      description: p.description,
      datasource: DS,
      gridPos: p.gridPos,
      fieldConfig: fieldConfig(p),
      options: options(p),
      targets: p.targets.map((t) => ({
        datasource: DS,
        refId: t.refId,
        expr: t.expr,
        ...(t.legendFormat === undefined ? {} : { legendFormat: t.legendFormat }),
        range: t.instant !== true,
        instant: t.instant === true,
        ...(p.type === 'table' ? { format: 'table' } : {}),
      })),
    })),
  };
}

/** File name → file text, exactly as committed under charts/peertunnel/dashboards/. */
export function renderDashboards(): Map<string, string> {
  return new Map(DASHBOARDS.map((d) => [d.file, `${JSON.stringify(toGrafana(d), null, 2)}\n`]));
}
