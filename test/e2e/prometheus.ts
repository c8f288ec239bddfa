/**
 * A real Prometheus (Debian's) on 127.0.0.1 with its own temp config and TSDB, scraping static
 * targets every second: the sidecars' and relays' admin ports as the lab kubelets forward them,
 * labelled the way the chart's PodMonitor labels pod targets (job <ns>/<podmonitor>, namespace,
 * pod, container) plus the cluster, and the operators' /metrics.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eventually } from '../helpers/node-process.js';
import { freePort } from '../integration/operator-harness.js';

const PROMETHEUS = process.env.PROMETHEUS ?? 'prometheus';

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
  stop(): Promise<void>;
}

export async function startPrometheus(targets: readonly ScrapeTarget[]): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), 'pt-e2e-prometheus-'));
  const api = `127.0.0.1:${await freePort()}`;
  const jobs = [...new Set(targets.map((t) => t.job))];
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '900ms' },
    scrape_configs: jobs.map((job) => ({
      job_name: job,
      static_configs: targets
        .filter((t) => t.job === job)
        .map((t) => ({ targets: [t.address], labels: t.labels })),
    })),
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
  return {
    query: async (expr) => {
      const res = await fetch(
        `http://${api}/api/v1/query?${new URLSearchParams({ query: expr }).toString()}`,
      );
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
      };
      if (body.status !== 'success') throw new Error(`PromQL ${expr}: ${body.error ?? body.status}`);
      return (body.data?.result ?? []).map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
    },
    stop,
  };
}
