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

/** The issue's targets, checked against this run's rows. `met` is null when a value is missing. */
export function checkTargets(rows: ResultRow[]): TargetCheck[] {
  const row = (id: string) => rows.find((r) => r.id === id);
  const t1 = row('throughput_1');
  const added = row('latency_added_p50');
  const rate = row('conn_rate');
  const memF = row('mem_idle_forwarder');
  const memE = row('mem_idle_exposer');
  const checks: TargetCheck[] = [];
  const ratio1 = t1?.tunnelOverSocat ?? null;
  checks.push({
    target: 'one-stream throughput ≥ 25% of socat',
    measured: ratio1 === null ? 'n/a' : `${(ratio1 * 100).toFixed(1)}%`,
    met: ratio1 === null ? null : ratio1 >= 0.25,
  });
  const addedRatio = added?.tunnelOverSocat ?? null;
  checks.push({
    target: 'added p50 latency ≤ 4× socat’s',
    measured:
      addedRatio === null
        ? 'n/a'
        : `${addedRatio.toFixed(2)}× (${added?.tunnel?.toFixed(0)} µs vs ${added?.socat?.toFixed(0)} µs)`,
    met: addedRatio === null ? null : addedRatio <= 4,
  });
  const r = rate?.tunnel ?? null;
  checks.push({
    target: '≥ 2,000 new tunneled connections/s',
    measured: r === null ? 'n/a' : `${r.toFixed(0)}/s`,
    met: r === null ? null : r >= 2_000,
  });
  const idle = Math.max(memF?.tunnel ?? Number.NaN, memE?.tunnel ?? Number.NaN);
  checks.push({
    target: 'node RSS idle ≤ 100 MB',
    measured: Number.isNaN(idle) ? 'n/a' : `${idle.toFixed(1)} MB (larger of the two nodes)`,
    met: Number.isNaN(idle) ? null : idle <= 100,
  });
  return checks;
}
