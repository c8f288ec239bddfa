/**
 * The bench's credentials group: what workload credentials cost on the data path. Two tunnels in
 * one network (client → forwarder → exposer → echo server), as the image runs them (the bundle
 * under the image's Node flags): one open (no trust section), one credentialed (cluster key,
 * credentials on both nodes, the exposer's `allowFrom` naming the forwarder's namespace). The
 * credential exchange happens once per connection and the check once per stream, so the rows to
 * watch are new connections per second (a new stream each) and request/response p50. Runs
 * alternate off, on, off, on… so load from other work drifts over both alike; each round's on ÷ off
 * is one paired sample and the median of those is the figure (a round's load is shared by its
 * pair, while it moves by ±15% between rounds on a busy 2-core machine). Target: with credentials
 * on, both within 5% of off.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NODE_FLAGS } from '../../sidecar/node/flags.js';
import {
  keyEnv,
  loopbackBase,
  makeCluster,
  newMember,
  trustOf,
  type Workload,
  writeCredential,
} from '../helpers/credentials.js';
import { type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';
import { echoServer } from '../helpers/traffic.js';
import { connectionRate, latency } from './measures.js';
import { cpuSeconds } from './procs.js';

export interface CredentialsBenchOptions {
  quick: boolean;
  /** Named in BENCH_ONLY: runs in quick mode too. */
  explicit: boolean;
  log: (msg: string) => void;
}

export interface CredentialsBenchResult {
  text: string;
  rows: Array<{ measure: string; off: number; on: number; ratio: number; met: boolean }>;
  failures: string[];
}

const HOUR = 3_600;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

export async function credentialsBench(o: CredentialsBenchOptions): Promise<CredentialsBenchResult> {
  if (o.quick && !o.explicit)
    return {
      text: 'credentials: skipped in quick mode (name `credentials` in BENCH_ONLY to run it)',
      rows: [],
      failures: [],
    };
  const sizes = o.quick
    ? { rounds: 3, pings: 200, warmup: 50, conns: 200, concurrency: 16 }
    : { rounds: 9, pings: 2_000, warmup: 200, conns: 2_000, concurrency: 32 };
  const dir = await mkdtemp(join(tmpdir(), 'pt-bench-cred-'));
  const nodes: NodeProcess[] = [];
  const echo = await echoServer();
  const failures: string[] = [];
  try {
    const start = async (config: Record<string, unknown>) => {
      const node = await startNodeProcess(
        { ...loopbackBase, ...config },
        { env: keyEnv, bundle: NODE_FLAGS },
      );
      nodes.push(node);
      return node;
    };
    const relay = await start({ role: 'relay' });
    const bootstrap = relay.addresses;
    const cluster = makeCluster('a');
    const credentialed = async (w: Workload) => {
      const m = await newMember(dir);
      await writeCredential(m, w, HOUR);
      return trustOf(m, [cluster]);
    };
    const ports = { off: await freePort(), on: await freePort() };
    const pairs = {
      off: [
        await start({ bootstrap, expose: [{ name: 'echo-off', port: echo.port }] }),
        await start({ bootstrap, forward: [{ name: 'echo-off', localPort: ports.off }] }),
      ],
      on: [] as NodeProcess[],
    };
    const onExposer = await start({
      bootstrap,
      ...(await credentialed({ cluster, namespace: 'shop', expose: ['echo-on'] })),
      expose: [{ name: 'echo-on', port: echo.port, allowFrom: [{ cluster: 'a', namespace: 'shop' }] }],
    });
    const onForwarder = await start({
      bootstrap,
      ...(await credentialed({ cluster, namespace: 'shop' })),
      forward: [{ name: 'echo-on', localPort: ports.on }],
    });
    pairs.on = [onExposer, onForwarder];
    /** CPU seconds the pair's two nodes have used so far. */
    const pairCpu = async (mode: 'off' | 'on') => {
      let secs = 0;
      for (const n of pairs[mode]) secs += await cpuSeconds(n.proc.pid ?? -1);
      return secs;
    };

    const samples = {
      p50: { off: [] as number[], on: [] as number[] },
      conns: { off: [] as number[], on: [] as number[] },
      cpu: { off: [] as number[], on: [] as number[] },
    };
    o.log(
      `credentials: ${sizes.rounds} alternating rounds of ${sizes.pings} round trips and ${sizes.conns} new connections, off and on`,
    );
    for (let round = 0; round < sizes.rounds; round++) {
      for (const mode of ['off', 'on'] as const) {
        const l = await latency(ports[mode], 64, sizes.warmup, sizes.pings, 60_000);
        samples.p50[mode].push(l.p50Us);
        const cpu0 = await pairCpu(mode);
        const c = await connectionRate(ports[mode], sizes.conns, sizes.concurrency, 60_000);
        samples.cpu[mode].push((((await pairCpu(mode)) - cpu0) * 1e6) / Math.max(1, c.completed));
        if (c.completed < sizes.conns) failures.push(`${mode}: ${c.completed} of ${sizes.conns} connections`);
        samples.conns[mode].push(c.perSecond);
      }
    }
    const paired = (m: { off: number[]; on: number[] }) =>
      median(m.on.map((on, i) => on / (m.off[i] ?? Number.NaN)));
    const p50 = { off: median(samples.p50.off), on: median(samples.p50.on), ratio: paired(samples.p50) };
    const conns = {
      off: median(samples.conns.off),
      on: median(samples.conns.on),
      ratio: paired(samples.conns),
    };
    // Both nodes of the pair, summed: CPU time is what a busy machine blurs least.
    const cpu = { off: median(samples.cpu.off), on: median(samples.cpu.on), ratio: paired(samples.cpu) };
    const rows = [
      { measure: 'req/resp p50 (µs) ↓', ...p50, met: p50.ratio <= 1.05 },
      { measure: 'new connections (conn/s) ↑', ...conns, met: conns.ratio >= 0.95 },
      { measure: 'CPU per 1,000 new conns (ms) ↓', ...cpu, met: cpu.ratio <= 1.05 },
    ];
    // The comparison means something only if the one pair ran credentialed and the other open.
    const onTrust = (await onExposer.status()).trust ?? { mode: 'missing', credentialedPeers: 0 };
    const offTrust = (await (pairs.off[0] as NodeProcess).status()).trust ?? { mode: 'missing' };
    if (onTrust.mode !== 'credentialed' || onTrust.credentialedPeers < 1)
      failures.push(
        `on: the exposer ran ${onTrust.mode} with ${onTrust.credentialedPeers} credentialed peers`,
      );
    if (offTrust.mode !== 'open') failures.push(`off: the exposer ran ${offTrust.mode}`);
    const refused = await onExposer.metric('peertunnel_trust_refused_total').catch(() => 0);
    const text = [
      `credentials off vs on (${sizes.rounds} alternating rounds: medians, and the median of each round's on ÷ off; bundle under ${NODE_FLAGS.join(' ')})`,
      `${'measure'.padEnd(32)}${'off'.padStart(10)}${'on'.padStart(10)}${'on ÷ off'.padStart(10)}`,
      ...rows.map(
        (r) =>
          `${r.measure.padEnd(32)}${r.off.toFixed(0).padStart(10)}${r.on.toFixed(0).padStart(10)}${`${r.ratio.toFixed(3)}×`.padStart(10)}`,
      ),
      `per round, p50 off ${samples.p50.off.map((v) => v.toFixed(0)).join('/')}, on ${samples.p50.on.map((v) => v.toFixed(0)).join('/')}; ` +
        `conn/s off ${samples.conns.off.map((v) => v.toFixed(0)).join('/')}, on ${samples.conns.on.map((v) => v.toFixed(0)).join('/')}; ` +
        `CPU ms/1,000 conns off ${samples.cpu.off.map((v) => v.toFixed(0)).join('/')}, on ${samples.cpu.on.map((v) => v.toFixed(0)).join('/')}`,
      `credentialed exposer: ${onTrust.credentialedPeers} credentialed peers, ${refused ?? 0} trust refusals (should be 0)`,
      'targets:',
      ...rows.map(
        (r) =>
          `  ${r.met ? ' met' : 'MISS'}  ${r.measure} with credentials within 5% of off: ${r.ratio.toFixed(3)}×`,
      ),
      ...failures.map((f) => `FAILED: credentials ${f}`),
    ].join('\n');
    return { text, rows, failures };
  } finally {
    await Promise.allSettled([...nodes].reverse().map((n) => n.stop()));
    await echo.close();
    await rm(dir, { recursive: true, force: true });
  }
}
