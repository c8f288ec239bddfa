/**
 * Keeps `npm run bench` from rotting: runs the built bench in quick mode (small sizes, the same
 * code paths) and checks that the table has every row with numbers in every column that has one.
 * The figures themselves are not asserted: on a shared machine they are noise, not results.
 *
 * The kubo column has numbers wherever kubo is cached (always under CI=true: .ci/run builds it);
 * elsewhere the table must say why it has none.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from '@jest/globals';
import { NODE_FLAGS } from '../../sidecar/node/flags.js';
import { COLUMNS, type ResultRow, ROWS } from '../bench/table.js';
import { REPO_ROOT } from '../helpers/node-process.js';

const run = promisify(execFile);

it('runs the bench in quick mode and fills every row', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pt-bench-'));
  try {
    const out = join(dir, 'bench-results.json');
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'dist', 'test', 'bench', 'run.js')], {
      env: { ...process.env, BENCH_QUICK: '1', BENCH_OUT: out },
      timeout: 55_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(await readFile(out, 'utf8')) as {
      quick: boolean;
      sizes: { held: number };
      rows: ResultRow[];
      kubo: { available: boolean; reason?: string; negotiated?: string };
      nodeFlags: string[];
      strace: boolean;
    };
    expect(result.quick).toBe(true);
    expect(result.rows.map((r) => r.id)).toEqual(ROWS.map((r) => r.id));
    if (process.env.CI === 'true') expect(result.kubo).toMatchObject({ available: true });
    if (result.kubo.available) {
      // kubo's own metrics named what the pair negotiated.
      expect(result.kubo.negotiated).toMatch(/^\/(tls\/1\.0\.0|noise) \+ \/yamux\/1\.0\.0/);
      expect(stdout).toContain('tunnel/kubo');
    } else {
      expect(stdout).toContain(`kubo p2p: ${result.kubo.reason}`);
      expect(result.rows.every((r) => r.kubo === null)).toBe(true);
    }
    const columns = COLUMNS.filter((c) => c !== 'kubo' || result.kubo.available);
    // The nodes ran with the image's flags, and the table says which.
    expect(result.nodeFlags).toEqual([...NODE_FLAGS]);
    expect(stdout).toContain(`under node ${NODE_FLAGS.join(' ')}`);
    // Write syscalls need strace; without it the table says so.
    if (!result.strace) expect(stdout).toContain('strace is not installed');
    for (const spec of ROWS) {
      if (spec.id.startsWith('writes_') && !result.strace) continue;
      const row = result.rows.find((r) => r.id === spec.id);
      for (const column of columns) {
        const value = row?.[column];
        if (spec.without?.includes(column) === true) expect(value).toBeNull();
        else {
          // A missing figure would be null; a broken measure NaN or 0.
          expect({ row: spec.id, column, finite: Number.isFinite(value) }).toEqual({
            row: spec.id,
            column,
            finite: true,
          });
          expect(value).toBeGreaterThan(spec.id === 'latency_added_p50' ? -1e9 : 0);
        }
      }
      // Every row's label is in the printed table, along with the load and the targets.
      expect(stdout).toContain(spec.label.replace('N open', `${result.sizes.held} open`));
    }
    expect(stdout).toMatch(/load average .* at start [\d.]+ [\d.]+ [\d.]+, at end/);
    expect(stdout).toContain('targets:');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

it('runs the credentials group in quick mode: both tunnels measured, off and on, with the ratio', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'pt-bench-'));
  try {
    const out = join(dir, 'bench-results.json');
    const { stdout } = await run(process.execPath, [join(REPO_ROOT, 'dist', 'test', 'bench', 'run.js')], {
      env: { ...process.env, BENCH_QUICK: '1', BENCH_ONLY: 'credentials', BENCH_KUBO: '0', BENCH_OUT: out },
      timeout: 85_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const result = JSON.parse(await readFile(out, 'utf8')) as {
      credentials: {
        rows: Array<{ measure: string; off: number; on: number; ratio: number }>;
        failures: string[];
      };
    };
    expect(result.credentials.failures).toEqual([]);
    expect(result.credentials.rows.map((r) => r.measure)).toEqual([
      'req/resp p50 (µs) ↓',
      'new connections (conn/s) ↑',
      'CPU per 1,000 new conns (ms) ↓',
    ]);
    for (const r of result.credentials.rows) {
      for (const v of [r.off, r.on, r.ratio]) expect(Number.isFinite(v) && v > 0).toBe(true);
    }
    expect(stdout).toContain('credentials off vs on');
    expect(stdout).toMatch(/with credentials within 5% of off: [\d.]+×/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 90_000);
