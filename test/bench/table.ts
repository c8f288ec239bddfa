/**
 * The bench's result table: rows are measures, columns raw TCP / socat relay / kubo `ipfs p2p` /
 * tunnel, and the tunnel's ratios against each baseline.
 */

export type Column = 'raw' | 'socat' | 'kubo' | 'tunnel';
export const COLUMNS: readonly Column[] = ['raw', 'socat', 'kubo', 'tunnel'];

export interface RowSpec {
  id: string;
  label: string;
  unit: string;
  /** Which way is better, so a reader can tell a good ratio from a bad one. */
  better: 'higher' | 'lower';
  /** Decimals shown. */
  digits: number;
  /** Columns that have no meaning for this row (e.g. raw TCP has no relay process to weigh). */
  without?: Column[];
}

/** A forwarder row and an exposer row of a measure only the two columns with nodes have. */
function perNode(id: string, label: string, unit: string, digits: number): RowSpec[] {
  return (['forwarder', 'exposer'] as const).map((node) => ({
    id: `${id}_${node}`,
    label: `${label}, ${node === 'forwarder' ? 'fwd' : 'exp'}`,
    unit,
    better: 'lower' as const,
    digits,
    without: ['raw', 'socat'] as Column[],
  }));
}

export const ROWS: readonly RowSpec[] = [
  { id: 'throughput_1', label: 'throughput, 1 stream', unit: 'MiB/s', better: 'higher', digits: 1 },
  { id: 'throughput_16', label: 'throughput, 16 streams', unit: 'MiB/s', better: 'higher', digits: 1 },
  { id: 'latency_p50', label: 'req/resp latency p50', unit: 'µs', better: 'lower', digits: 0 },
  { id: 'latency_p99', label: 'req/resp latency p99', unit: 'µs', better: 'lower', digits: 0 },
  {
    id: 'latency_added_p50',
    label: 'added latency p50 (− raw)',
    unit: 'µs',
    better: 'lower',
    digits: 0,
    without: ['raw'],
  },
  { id: 'conn_rate', label: 'new connections', unit: 'conn/s', better: 'higher', digits: 0 },
  { id: 'ttfb_cold', label: 'time to first byte, cold', unit: 'ms', better: 'lower', digits: 2 },
  { id: 'ttfb_warm', label: 'time to first byte, warm', unit: 'ms', better: 'lower', digits: 2 },
  {
    id: 'start_ready',
    label: 'process start → ready',
    unit: 'ms',
    better: 'lower',
    digits: 0,
    without: ['raw'],
  },
  {
    id: 'spawn_first_byte',
    label: 'process start → first byte',
    unit: 'ms',
    better: 'lower',
    digits: 0,
    without: ['raw', 'socat'],
  },
  ...perNode('cpu_mib', 'CPU per MiB', 'ms', 2),
  ...perNode('cpu_krt', 'CPU per 1,000 round trips', 'ms', 0),
  ...perNode('cpu_kconn', 'CPU per 1,000 new conns', 'ms', 0),
  ...perNode('writes_mib', 'write syscalls per MiB', '', 1),
  ...perNode('writes_rt', 'write syscalls per round trip', '', 2),
  {
    id: 'mem_idle_forwarder',
    label: 'memory idle, forwarder/hop 1',
    unit: 'MB',
    better: 'lower',
    digits: 1,
    without: ['raw'],
  },
  {
    id: 'mem_idle_exposer',
    label: 'memory idle, exposer/hop 2',
    unit: 'MB',
    better: 'lower',
    digits: 1,
    without: ['raw'],
  },
  {
    id: 'mem_held_forwarder',
    label: 'memory, N open conns, fwd/hop 1',
    unit: 'MB',
    better: 'lower',
    digits: 1,
    without: ['raw'],
  },
  {
    id: 'mem_held_exposer',
    label: 'memory, N open conns, exp/hop 2',
    unit: 'MB',
    better: 'lower',
    digits: 1,
    without: ['raw'],
  },
];

export interface ResultRow {
  id: string;
  label: string;
  unit: string;
  better: 'higher' | 'lower';
  raw: number | null;
  socat: number | null;
  kubo: number | null;
  tunnel: number | null;
  /** tunnel ÷ socat, tunnel ÷ raw and tunnel ÷ kubo, where both exist. */
  tunnelOverSocat: number | null;
  tunnelOverRaw: number | null;
  tunnelOverKubo: number | null;
  /** Columns whose measure failed (printed as FAIL). */
  failed: Column[];
}

export type Measured = Partial<Record<string, Partial<Record<Column, number>>>>;

export function buildRows(
  measured: Measured,
  failures: ReadonlyArray<{ row: string; column: Column }> = [],
): ResultRow[] {
  return ROWS.map((spec) => {
    const m = measured[spec.id] ?? {};
    const get = (c: Column) => (spec.without?.includes(c) === true ? null : (m[c] ?? null));
    const raw = get('raw');
    const socat = get('socat');
    const kubo = get('kubo');
    const tunnel = get('tunnel');
    const ratio = (a: number | null, b: number | null) =>
      a === null || b === null || b === 0 ? null : a / b;
    return {
      id: spec.id,
      label: spec.label,
      unit: spec.unit,
      better: spec.better,
      raw,
      socat,
      kubo,
      tunnel,
      tunnelOverSocat: ratio(tunnel, socat),
      tunnelOverRaw: ratio(tunnel, raw),
      tunnelOverKubo: ratio(tunnel, kubo),
      failed: failures.filter((f) => f.row === spec.id).map((f) => f.column),
    };
  });
}

/**
 * The printed table. `kuboAbsent`: why there is no kubo column this run (e.g. "kubo not built
 * (test/env/build-tools.sh ipfs)"); its cells then say "n/a" and the reason is printed under the table.
 */
export function formatTable(rows: ResultRow[], heldConnections: number, kuboAbsent?: string): string {
  const digitsOf = new Map(ROWS.map((r) => [r.id, r.digits]));
  const num = (v: number | null, digits: number, failed: boolean) =>
    failed ? 'FAIL' : v === null ? '—' : v.toFixed(digits);
  const ratio = (v: number | null) => (v === null ? '—' : `${v.toFixed(2)}×`);
  const header = [
    'measure',
    'unit',
    'raw TCP',
    'socat 2-hop',
    'kubo p2p',
    'PeerTunnel',
    'tunnel/socat',
    'tunnel/raw',
    'tunnel/kubo',
  ];
  const body = rows.map((r) => {
    const d = digitsOf.get(r.id) ?? 1;
    return [
      `${r.label.replace('N open', `${heldConnections} open`)} ${r.better === 'higher' ? '↑' : '↓'}`,
      r.unit,
      num(r.raw, d, r.failed.includes('raw')),
      num(r.socat, d, r.failed.includes('socat')),
      kuboAbsent === undefined ? num(r.kubo, d, r.failed.includes('kubo')) : 'n/a',
      num(r.tunnel, d, r.failed.includes('tunnel')),
      ratio(r.tunnelOverSocat),
      ratio(r.tunnelOverRaw),
      kuboAbsent === undefined ? ratio(r.tunnelOverKubo) : 'n/a',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  const absent = kuboAbsent === undefined ? [] : [`kubo p2p: ${kuboAbsent}`];
  return [line(header), rule, ...body.map(line), ...absent].join('\n');
}

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | null;
}

/** The data plane's targets (ratios to kubo in the same run, and absolute ones), checked. */
export function checkTargets(rows: ResultRow[]): TargetCheck[] {
  const row = (id: string) => rows.find((r) => r.id === id);
  const checks: TargetCheck[] = [];
  const vsKubo = (id: string, what: string, op: '≥' | '≤', bound: number) => {
    const r = row(id)?.tunnelOverKubo ?? null;
    checks.push({
      target: `${what} ${op} ${bound}× kubo`,
      measured: r === null ? 'n/a' : `${r.toFixed(2)}×`,
      met: r === null ? null : op === '≥' ? r >= bound : r <= bound,
    });
  };
  const atMost = (id: string, what: string, bound: number, unit: string) => {
    const v = row(id)?.tunnel ?? null;
    checks.push({
      target: `${what} ≤ ${bound} ${unit}`,
      measured: v === null ? 'n/a' : `${v.toFixed(1)} ${unit}`,
      met: v === null ? null : v <= bound,
    });
  };
  vsKubo('throughput_1', 'one-stream throughput', '≥', 1);
  vsKubo('throughput_16', '16-stream throughput', '≥', 1);
  vsKubo('latency_p50', 'request/response p50', '≤', 1.1);
  vsKubo('latency_p99', 'request/response p99', '≤', 2);
  vsKubo('conn_rate', 'new connections per second', '≥', 0.8);
  atMost('mem_idle_forwarder', 'forwarder RSS idle', 72, 'MB');
  atMost('mem_held_forwarder', 'forwarder RSS with the open connections', 130, 'MB');
  atMost('start_ready', 'spawn → ready', 300, 'ms');
  atMost('spawn_first_byte', 'spawn → first byte through a forward', 600, 'ms');
  return checks;
}
