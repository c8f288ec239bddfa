/**
 * A real Prometheus (Debian's) on 127.0.0.1 with its own temp config and TSDB, scraping every
 * second: the integration test's nodes and operator, the e2e's sidecars, relays and operators
 * (labelled as the chart's PodMonitor labels pod targets).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../helpers/node-process.js';
import { freePort } from './operator-harness.js';

/** Debian's, unless $PROMETHEUS names another. */
export const PROMETHEUS = process.env.PROMETHEUS ?? '/usr/bin/prometheus';

export interface ScrapeTarget {
  job: string;
  address: string;
  labels: Record<string, string>;
}

export interface Sample {
  metric: Record<string, string>;
  value: number;
}

export interface Prometheus {
  /** An instant query; throws when Prometheus answers an error (invalid PromQL). */
  query(expr: string): Promise<Sample[]>;
  /** A GET of its HTTP API (`/api/v1/rules`, ...), the JSON answer as it is. */
  get<T>(path: string, params?: Record<string, string>): Promise<T>;
  stop(): Promise<void>;
}

/** Static scrape configs, one job per distinct `job` of the targets. */
export function staticScrapeConfigs(targets: readonly ScrapeTarget[]): object[] {
  return [...new Set(targets.map((t) => t.job))].map((job) => ({
    job_name: job,
    static_configs: targets
      .filter((t) => t.job === job)
      .map((t) => ({ targets: [t.address], labels: t.labels })),
  }));
}

/** Starts Prometheus with `scrape_configs` (and `rule_files`), scraping and evaluating every second. */
export async function startPrometheus(init: {
  scrapeConfigs: readonly object[];
  ruleFiles?: readonly string[];
}): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'pt-prometheus-'));
  const api = `127.0.0.1:${await freePort()}`;
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
    ...(init.ruleFiles === undefined ? {} : { rule_files: init.ruleFiles }),
    scrape_configs: init.scrapeConfigs,
  };
  await writeFile(join(dir, 'prometheus.yml'), JSON.stringify(config));
  let log = '';
  const proc: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=${api}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  proc.stderr?.on('data', (d: Buffer) => {
    log = (log + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await eventually(
      async () => ((await fetch(`http://${api}/-/ready`)).ok ? true : undefined),
      30_000,
      'Prometheus ready',
    );
  } catch (err) {
    await stop();
    throw new Error(`${String(err)}\n${log}`);
  }
  const get = async <T>(path: string, params: Record<string, string> = {}): Promise<T> => {
    const res = await fetch(`http://${api}${path}?${new URLSearchParams(params).toString()}`);
    return (await res.json()) as T;
  };
  return {
    get,
    query: async (expr) => {
      const body = await get<{
        status: string;
        error?: string;
        data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      }>('/api/v1/query', { query: expr });
      if (body.status !== 'success') throw new Error(`PromQL ${expr}: ${body.error ?? body.status}`);
      return (body.data?.result ?? []).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
    },
    stop,
  };
}
