/**
 * `npm run bench`: PeerTunnel (client → forwarder process → exposer process → server, a relay
 * process as bootstrap) beside raw TCP (client → server), a two-hop socat relay (client →
 * socat → socat → server) and kubo's `ipfs p2p forward` (client → kubo → kubo → server, the
 * peer's own libp2p stack in the same private network; ./kubo-pair.ts), all on 127.0.0.1,
 * measured in one run, printed as one table of absolute figures and ratios, and written as JSON.
 *
 * Clients and servers live in this process, so every column pays the same client and hashing
 * cost. Columns are measured one after another per measure (raw, socat, kubo, tunnel), so load
 * from other work on a shared machine drifts over all of them alike rather than over one.
 *
 * Environment:
 * - BENCH_QUICK=1: small sizes (the smoke test's mode).
 * - BENCH_OUT=FILE: where the JSON goes (default dist/bench-results.json).
 * - BENCH_ONLY=a,b: only these groups: ttfb, latency, connrate, throughput1, throughput16, memory,
 *   operator (test/bench/operator.ts: a real API server; in quick mode only when named),
 *   credentials (test/bench/credentials.ts: credentials off vs on; in quick mode only when named),
 *   lab (test/bench/lab.ts: the NAT lab, needs root; in quick mode only when named).
 * The tunnel's nodes run as the image runs them: the bundle (dist/bundle/peertunnel.mjs) with the
 * Node flags of sidecar/node/flags.ts; the table's notes name them.
 * - BENCH_NODE_FLAGS="...": other Node flags for the tunnel's nodes instead (to choose them by
 *   measurement, e.g. `--max-semi-space-size=2`; an empty string: none).
 * - BENCH_NODE_OPTIONS=...: extra NODE_OPTIONS for the forwarder and exposer, e.g. `--import
 *   ./some-patch.js` to measure a proposed fix before it lands.
 * - BENCH_PROFILE=DIR: run the forwarder and exposer with --cpu-prof into DIR (written at exit);
 *   summarize with `node dist/test/bench/profile-summary.js DIR/*.cpuprofile`.
 * - BENCH_KUBO=0: leave the kubo column out. Without a cached kubo (`test/env/build-tools.sh ipfs`)
 *   it is left out anyway, with that reason in the table, except under CI=true, where that fails.
 * - BENCH_KUBO_SECURITY=noise: kubo with TLS switched off, so both pairs run noise (the default
 *   is kubo's own choice between two kubos, TLS).
 * - BENCH_KUBO_RCMGR=1: keep kubo's resource manager (off by default; see ./kubo-pair.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { NODE_FLAGS } from '../../sidecar/node/flags.js';
import {
  BUNDLE,
  type NodeProcess,
  REPO_ROOT,
  startNodeProcess,
  testSwarmKey,
} from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';
import { echoServer, rssOf } from '../helpers/traffic.js';
import { cachedKubo } from '../interop/kubo-daemon.js';
import { credentialsBench } from './credentials.js';
import { framedSinkServer } from './framed.js';
import { type KuboPair, startKuboPair } from './kubo-pair.js';
import { labBench } from './lab.js';
import {
  connectionRate,
  firstByteSince,
  holdConnections,
  latency,
  throughput,
  timeToFirstByte,
  warmTimeToFirstByte,
} from './measures.js';
import { operatorBench } from './operator.js';
import { cpuSeconds, startSocatRelay, treePss } from './procs.js';
import { buildRows, COLUMNS, type Column, checkTargets, formatTable, type Measured } from './table.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const MB = 1e6;

const QUICK = process.env.BENCH_QUICK === '1';
const SIZES = QUICK
  ? {
      oneStream: 32 * MiB,
      manyStreams: 16,
      manyEach: 2 * MiB,
      pingSize: 64,
      pingWarmup: 50,
      pingRounds: 200,
      conns: 200,
      connConcurrency: 16,
      warmTtfbTries: 5,
      held: 100,
      settleMs: 500,
      straceBytes: 8 * MiB,
      straceRounds: 100,
    }
  : {
      oneStream: GiB,
      manyStreams: 16,
      manyEach: 128 * MiB,
      pingSize: 64,
      pingWarmup: 200,
      pingRounds: 2_000,
      conns: 3_000,
      connConcurrency: 32,
      warmTtfbTries: 20,
      held: 1_000,
      settleMs: 3_000,
      straceBytes: 128 * MiB,
      straceRounds: 1_000,
    };
/** Upper bounds per measure and column: the bench fails loudly rather than running forever. */
const LIMIT_MS = {
  throughput: QUICK ? 30_000 : 120_000,
  latency: QUICK ? 10_000 : 30_000,
  connRate: QUICK ? 10_000 : 30_000,
  held: QUICK ? 20_000 : 60_000,
};
const GROUPS = [
  'ttfb',
  'latency',
  'connrate',
  'throughput1',
  'throughput16',
  'memory',
  'operator',
  'credentials',
  'lab',
] as const;
type Group = (typeof GROUPS)[number];
const isGroup = (g: string): g is Group => (GROUPS as readonly string[]).includes(g);
const ONLY = new Set<Group>((process.env.BENCH_ONLY ?? '').split(',').filter(isGroup));
const runs = (g: Group) => ONLY.size === 0 || ONLY.has(g);
const OUT = process.env.BENCH_OUT ?? join(REPO_ROOT, 'dist', 'bench-results.json');
const PROFILE_DIR = process.env.BENCH_PROFILE;
const KUBO_SECURITY = process.env.BENCH_KUBO_SECURITY === 'noise' ? 'noise' : 'default';
const KEY_ENV = 'PEERTUNNEL_BENCH_KEY';
/** The Node flags the tunnel's nodes run with: the image's, unless BENCH_NODE_FLAGS says otherwise. */
const RUN_FLAGS: readonly string[] =
  process.env.BENCH_NODE_FLAGS === undefined
    ? NODE_FLAGS
    : process.env.BENCH_NODE_FLAGS.split(/\s+/).filter((f) => f !== '');
/** Write-like system calls (what a byte costs in kernel crossings on the sending side). */
const WRITE_SYSCALLS = new Set(['write', 'writev', 'sendmsg', 'sendto', 'sendmmsg', 'pwrite64']);
const HAS_STRACE = spawnSync('strace', ['-V'], { stdio: 'ignore' }).status === 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

/**
 * Counts the write-like system calls of process `pid` (all its threads) while `fn` runs, with
 * `strace -c -f` attached to it. strace slows the process down a lot, so only counts come from
 * such a run, never times.
 */
async function writeSyscallsDuring<T>(
  pid: number,
  fn: () => Promise<T>,
): Promise<{ writes: number; out: T }> {
  const dir = await mkdtemp(join(tmpdir(), 'pt-strace-'));
  const file = join(dir, 'summary');
  try {
    const tracer = spawn('strace', ['-c', '-f', '-o', file, '-p', String(pid)], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = new Promise<void>((resolve) => tracer.once('exit', () => resolve()));
    // strace says "Process N attached" on stderr once it is in.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('strace did not attach within 10 s')), 10_000);
      tracer.stderr?.on('data', (d: Buffer) => {
        if (d.toString().includes('attached')) {
          clearTimeout(timer);
          resolve();
        }
      });
      tracer.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`strace exited with ${code}`));
      });
    });
    let out: T;
    try {
      out = await fn();
    } finally {
      tracer.kill('SIGINT');
      await exited;
    }
    let writes = 0;
    for (const line of (await readFile(file, 'utf8')).split('\n')) {
      const cells = line.trim().split(/\s+/);
      const name = cells.at(-1) ?? '';
      // % time, seconds, usecs/call, calls, [errors,] syscall
      if (WRITE_SYSCALLS.has(name)) writes += Number(cells[3]);
    }
    return { writes, out };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Stops a node, and kills it if it has not exited within `ms`: a node stuck while exiting must not
 * hang the bench (seen once: a crashed node spinning in Node's exit cleanup, never exiting).
 */
async function stopNode(node: NodeProcess, ms = 10_000): Promise<void> {
  const stopped = node.stop();
  const late = await Promise.race([stopped.then(() => false), sleep(ms).then(() => true)]);
  if (late) {
    log(`node ${node.proc.pid} did not exit within ${ms / 1000} s of SIGTERM: killing it`);
    await node.kill();
  }
}

/** Keeps the tail of a node's stderr, where an uncaught error would go. */
function stderrTail(node: NodeProcess): () => string {
  let tail = '';
  node.proc.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4_000);
  });
  return () => tail;
}

/** What a failed bench prints about each node: alive or not, warnings and errors, stderr. */
async function nodeDiagnosis(name: string, node: NodeProcess, stderr: () => string): Promise<string> {
  const p = node.proc;
  const state =
    p.exitCode !== null
      ? `exited with ${p.exitCode}`
      : p.signalCode !== null
        ? `killed by ${p.signalCode}`
        : 'running';
  const bad = node.logs.filter((l) => ['warn', 'error', 'fatal'].includes(l.level)).slice(-5);
  const streams = await node.metrics().then(
    (text) =>
      text
        .split('\n')
        .filter((l) => /^peertunnel_streams_(active|failed_total|opened_total)\{/.test(l))
        .join('; '),
    (err: unknown) => `no metrics: ${String(err)}`,
  );
  return [
    `${name} (pid ${p.pid}): ${state}`,
    `  ${streams}`,
    ...bad.map((l) => `  log: ${JSON.stringify(l).slice(0, 600)}`),
    ...(stderr() === '' ? [] : [`  stderr: ${stderr().trim().split('\n').slice(-15).join('\n    ')}`]),
  ].join('\n');
}

/** CPU used during one measure, in cores: the column's two forwarding processes and this one. */
interface CpuShare {
  forwarder: number;
  exposer: number;
  bench: number;
}

/** What the bench knows about kubo this run, for the table, the notes and the JSON. */
type KuboInfo =
  | { available: true; version: string; negotiated: string; settings: string[] }
  | { available: false; reason: string };

/** The last lines of a kubo daemon's output and whether it still runs, for a failure message. */
function kuboDiagnosis(name: string, pair: KuboPair, which: 'forwarder' | 'exposer'): string {
  const p = pair[which].proc;
  const state = p.exitCode !== null ? `exited with ${p.exitCode}` : (p.signalCode ?? 'running');
  const tail = pair[which].output().trim().split('\n').slice(-10).join('\n    ');
  return `${name} (pid ${p.pid}): ${state}${tail === '' ? '' : `\n  output: ${tail}`}`;
}

async function main(): Promise<number> {
  const startLoad = loadavg();
  const cores = cpus().length;
  log(
    `${QUICK ? 'quick' : 'full'} run, ${cores} cores, load ${startLoad.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const measured: Measured = {};
  const put = (id: string, column: Column, value: number) => {
    const row = measured[id] ?? {};
    row[column] = value;
    measured[id] = row;
  };
  const cpu: Partial<Record<Column, Record<string, CpuShare>>> = {};
  /** CPU seconds each node of a column used during one measure (for CPU per unit of work). */
  const cpuSecs: Partial<Record<Column, Record<string, { forwarder: number; exposer: number }>>> = {};
  let kubo: KuboInfo = { available: false, reason: 'left out (BENCH_KUBO=0)' };
  const notes: string[] = [];
  const failures: Array<{ row: string; column: Column; error: string }> = [];
  const cleanup: Array<() => Promise<unknown>> = [];
  const diagnoses: Array<() => Promise<string>> = [];
  const started = performance.now();

  try {
    // Raw TCP cold: the very first connection to servers that just started listening.
    const servers = { sink: await framedSinkServer(), echo: await echoServer() };
    cleanup.push(
      () => servers.sink.close(),
      () => servers.echo.close(),
    );
    if (runs('ttfb')) put('ttfb_cold', 'raw', await timeToFirstByte(servers.echo.port));

    // socat cold: the first connection right after both hops report listening.
    const socatEcho = await startSocatRelay(servers.echo.port, [await freePort(), await freePort()]);
    cleanup.push(() => socatEcho.stop());
    put('start_ready', 'socat', socatEcho.startMs);
    if (runs('ttfb')) put('ttfb_cold', 'socat', await timeToFirstByte(socatEcho.port));
    const socatSink = await startSocatRelay(servers.sink.port, [await freePort(), await freePort()]);
    cleanup.push(() => socatSink.stop());

    // kubo cold: the first connection right after the forward is in place. The forwarder daemon
    // knows the exposer's address (the forward's target names it) but has not dialed it yet, so
    // that connection pays the dial, PSK, security and muxer handshakes, like a tunnel's first.
    let kuboPair: KuboPair | undefined;
    if (process.env.BENCH_KUBO !== '0') {
      const bin = cachedKubo();
      if (bin === undefined) {
        kubo = { available: false, reason: 'kubo not built (test/env/build-tools.sh ipfs)' };
        if (process.env.CI === 'true')
          failures.push({ row: 'kubo', column: 'kubo', error: `${kubo.reason}; CI must build it` });
      } else {
        try {
          kuboPair = await startKuboPair({
            bin,
            swarmKey: testSwarmKey(),
            targets: { sink: servers.sink.port, echo: servers.echo.port },
            freePort,
            security: KUBO_SECURITY,
            resourceManager: process.env.BENCH_KUBO_RCMGR === '1',
          });
          const pair = kuboPair;
          cleanup.push(() => pair.stop());
          diagnoses.push(async () => kuboDiagnosis('kubo forwarder', pair, 'forwarder'));
          diagnoses.push(async () => kuboDiagnosis('kubo exposer', pair, 'exposer'));
          kubo = {
            available: true,
            version: pair.version,
            negotiated: 'not read',
            settings: pair.settings,
          };
          put('start_ready', 'kubo', pair.startMs);
        } catch (err) {
          const msg = err instanceof Error ? err.message : String(err);
          kubo = { available: false, reason: `kubo did not start: ${msg.split('\n')[0]}` };
          failures.push({ row: 'kubo', column: 'kubo', error: msg });
        }
      }
    }
    if (kuboPair !== undefined && runs('ttfb')) {
      try {
        const ttfb = await timeToFirstByte(kuboPair.ports.echo ?? -1);
        put('ttfb_cold', 'kubo', ttfb);
        // Its forwards are put in place through the daemon's API after it is up; the first
        // connection right after that is its first byte.
        put('spawn_first_byte', 'kubo', kuboPair.startMs + ttfb);
        notes.push('kubo start → first byte: daemon spawn → forwards in place, plus the cold first byte');
        notes.push('kubo cold TTFB: the forward knew the exposer daemon’s address, not yet connected');
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        log(`FAILED ttfb_cold (kubo): ${msg}`);
        failures.push({ row: 'ttfb_cold', column: 'kubo', error: msg });
      }
    }

    const env: NodeJS.ProcessEnv = { [KEY_ENV]: testSwarmKey() };
    const nodeOptions = [
      process.env.NODE_OPTIONS ?? '',
      process.env.BENCH_NODE_OPTIONS ?? '',
      PROFILE_DIR === undefined ? '' : `--cpu-prof --cpu-prof-dir=${PROFILE_DIR}`,
    ]
      .join(' ')
      .trim();
    const profEnv: NodeJS.ProcessEnv = nodeOptions === '' ? env : { ...env, NODE_OPTIONS: nodeOptions };
    if (process.env.BENCH_NODE_OPTIONS !== undefined)
      notes.push(`forwarder and exposer ran with NODE_OPTIONS=${nodeOptions}`);
    notes.push(
      `tunnel nodes: the bundle ${BUNDLE.slice(REPO_ROOT.length + 1)} under node ${RUN_FLAGS.join(' ') || '(no flags)'}` +
        (process.env.BENCH_NODE_FLAGS === undefined ? ' (the image’s flags)' : ' (BENCH_NODE_FLAGS)'),
    );
    const bundle = RUN_FLAGS;
    if (PROFILE_DIR !== undefined) await mkdir(PROFILE_DIR, { recursive: true });
    const base = {
      swarmKey: { env: KEY_ENV },
      listen: ['/ip4/127.0.0.1/tcp/0'],
      // info: startNodeProcess learns ports and addresses from the node_started line.
      log: { level: 'info' as const },
    };
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env, bundle });
    const relayErr = stderrTail(relay);
    cleanup.push(() => stopNode(relay));
    diagnoses.push(() => nodeDiagnosis('relay', relay, relayErr));
    const exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        expose: [
          { name: 'sink', port: servers.sink.port },
          { name: 'echo', port: servers.echo.port },
        ],
        // 1,000 connections held from one forwarder: at the default 256 MiB one peer may hold
        // 153 streams, so the node is sized as a user with such a client would size it.
        limits: { streams: 2_048, streamsPerPeer: 2_048 },
      },
      { env: profEnv, bundle },
    );
    cleanup.push(() => stopNode(exposer));
    const exposerErr = stderrTail(exposer);
    diagnoses.push(() => nodeDiagnosis('exposer', exposer, exposerErr));
    await exposer.waitFor((l) => l.event === 'service_announced' && l.service === 'echo', 20_000);
    await exposer.waitFor((l) => l.event === 'service_announced' && l.service === 'sink', 20_000);

    // Spawn → first byte: a forwarder of its own, a client connecting from the moment it is
    // spawned (again every 2 ms while the port refuses) until an echoed byte comes back through it.
    if (runs('ttfb')) {
      const port = await freePort();
      const spawnedFirst = performance.now();
      const client = firstByteSince(spawnedFirst, port, 20_000);
      const first = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, forward: [{ name: 'echo', localPort: port }] },
        { env, bundle },
      );
      try {
        put('spawn_first_byte', 'tunnel', await client);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        log(`FAILED spawn_first_byte (tunnel): ${msg}`);
        failures.push({ row: 'spawn_first_byte', column: 'tunnel', error: msg });
      } finally {
        await stopNode(first);
      }
    }

    // Tunnel cold: spawn the forwarder, poll /status until it says ready (connected to a network
    // peer, listeners bound), then at once connect and time the first response byte. That
    // includes whatever a fresh forwarder still has to do: look the provider up, dial the
    // exposer (TCP, PSK, noise, yamux), negotiate the stream, and the exposer's connect.
    const tunnel = { sink: await freePort(), echo: await freePort() };
    const spawnedAt = performance.now();
    const forwarder = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        forward: [
          { name: 'sink', localPort: tunnel.sink },
          { name: 'echo', localPort: tunnel.echo },
        ],
      },
      { env: profEnv, bundle },
    );
    cleanup.unshift(() => stopNode(forwarder));
    const forwarderErr = stderrTail(forwarder);
    diagnoses.push(() => nodeDiagnosis('forwarder', forwarder, forwarderErr));
    let readyStatus = await forwarder.status();
    for (let i = 0; !readyStatus.ready; i++) {
      if (i > 2_000) throw new Error(`forwarder not ready: ${readyStatus.notReady.join(', ')}`);
      await sleep(5);
      readyStatus = await forwarder.status();
    }
    put('start_ready', 'tunnel', performance.now() - spawnedAt);
    const echoFwd = readyStatus.forwards.find((f) => f.name === 'echo');
    const coldState =
      echoFwd === undefined || echoFwd.providers.length === 0
        ? 'no provider known yet'
        : echoFwd.providers.some((p) => p.connected)
          ? 'already connected to the exposer'
          : 'provider known, not connected';
    /**
     * Runs one measure for one column. A failure (hash mismatch, reset, time limit, a node gone)
     * is printed at once with the nodes' state, recorded as FAIL in the rows it would have
     * filled, and the bench goes on with the next measure and exits non-zero at the end.
     */
    const attempt = async (rowIds: string[], column: Column, fn: () => Promise<void>): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        log(`FAILED ${rowIds.join(', ')} (${column}): ${msg}`);
        for (const d of diagnoses) log(await d());
        for (const id of rowIds) failures.push({ row: id, column, error: msg });
      }
    };

    if (runs('ttfb')) {
      await attempt(['ttfb_cold'], 'tunnel', async () =>
        put('ttfb_cold', 'tunnel', await timeToFirstByte(tunnel.echo)),
      );
      notes.push(`tunnel cold TTFB: at ready the forwarder had ${coldState}`);
    }
    const ports = (kind: 'sink' | 'echo'): Record<Column, number> => ({
      raw: servers[kind].port,
      socat: (kind === 'sink' ? socatSink : socatEcho).port,
      kubo: kuboPair?.ports[kind] ?? -1,
      tunnel: tunnel[kind],
    });
    const columns = COLUMNS.filter((c) => c !== 'kubo' || kuboPair !== undefined);
    const pid = (p: NodeProcess) => p.proc.pid ?? -1;
    /** The forwarding processes of a column that has its own (the tunnel's nodes, kubo's daemons). */
    const procsOf = (c: Column): { forwarder: number; exposer: number } | undefined =>
      c === 'tunnel'
        ? { forwarder: pid(forwarder), exposer: pid(exposer) }
        : c === 'kubo' && kuboPair !== undefined
          ? { forwarder: kuboPair.forwarder.proc.pid ?? -1, exposer: kuboPair.exposer.proc.pid ?? -1 }
          : undefined;

    /** Runs `fn` for column `c` and records how much CPU each of its processes used (in cores). */
    const withCpu = async <T>(c: Column, label: string, fn: () => Promise<T>): Promise<T> => {
      const procs = procsOf(c);
      if (procs === undefined) return fn();
      const t0 = performance.now();
      const f0 = await cpuSeconds(procs.forwarder);
      const e0 = await cpuSeconds(procs.exposer);
      const b0 = process.cpuUsage();
      const out = await fn();
      const secs = (performance.now() - t0) / 1000;
      const b = process.cpuUsage(b0);
      const used = {
        forwarder: (await cpuSeconds(procs.forwarder)) - f0,
        exposer: (await cpuSeconds(procs.exposer)) - e0,
      };
      const byLabel = cpu[c] ?? {};
      byLabel[label] = {
        forwarder: used.forwarder / secs,
        exposer: used.exposer / secs,
        bench: (b.user + b.system) / 1e6 / secs,
      };
      cpu[c] = byLabel;
      const secsByLabel = cpuSecs[c] ?? {};
      secsByLabel[label] = used;
      cpuSecs[c] = secsByLabel;
      return out;
    };

    await sleep(SIZES.settleMs);
    for (const c of ['tunnel', 'kubo'] as const) {
      const procs = procsOf(c);
      if (procs === undefined) continue;
      put('mem_idle_forwarder', c, (await rssOf(procs.forwarder)) / MB);
      put('mem_idle_exposer', c, (await rssOf(procs.exposer)) / MB);
    }
    put('mem_idle_forwarder', 'socat', (await treePss(socatEcho.hops[0].pid ?? -1)) / MB);
    put('mem_idle_exposer', 'socat', (await treePss(socatEcho.hops[1].pid ?? -1)) / MB);

    if (runs('ttfb')) {
      log('time to first byte, warm');
      for (const c of columns)
        await attempt(['ttfb_warm'], c, async () =>
          put('ttfb_warm', c, await warmTimeToFirstByte(ports('echo')[c], SIZES.warmTtfbTries)),
        );
    }

    if (runs('latency')) {
      log(`latency: ${SIZES.pingRounds} × ${SIZES.pingSize}-byte ping-pong`);
      const p50: Partial<Record<Column, number>> = {};
      for (const c of columns)
        await attempt(['latency_p50', 'latency_p99', 'latency_added_p50'], c, async () => {
          const r = await withCpu(c, 'latency', () =>
            latency(ports('echo')[c], SIZES.pingSize, SIZES.pingWarmup, SIZES.pingRounds, LIMIT_MS.latency),
          );
          put('latency_p50', c, r.p50Us);
          put('latency_p99', c, r.p99Us);
          p50[c] = r.p50Us;
        });
      const rawP50 = p50.raw;
      if (rawP50 !== undefined)
        for (const c of columns) {
          const v = p50[c];
          if (c !== 'raw' && v !== undefined) put('latency_added_p50', c, v - rawP50);
        }
    }

    if (runs('connrate')) {
      log(`new connections: ${SIZES.conns}, ${SIZES.connConcurrency} at a time`);
      for (const c of columns)
        await attempt(['conn_rate'], c, async () => {
          const r = await withCpu(c, 'conn_rate', () =>
            connectionRate(ports('echo')[c], SIZES.conns, SIZES.connConcurrency, LIMIT_MS.connRate),
          );
          if (r.completed < SIZES.conns)
            notes.push(`${c} new connections: time limit hit after ${r.completed} of ${SIZES.conns}`);
          put('conn_rate', c, r.perSecond);
          const used = cpuSecs[c]?.conn_rate;
          if (used !== undefined && r.completed > 0)
            for (const node of ['forwarder', 'exposer'] as const)
              put(`cpu_kconn_${node}`, c, (used[node] * 1000 * 1000) / r.completed);
        });
    }

    // Before the throughput runs, so the figure is about open connections, not a heap that just
    // carried gigabytes.
    if (runs('memory')) {
      log(`${SIZES.held} open idle connections`);
      await attempt(['mem_held_forwarder', 'mem_held_exposer'], 'socat', async () => {
        const held = await holdConnections(ports('echo').socat, SIZES.held, 32, LIMIT_MS.held);
        await sleep(SIZES.settleMs);
        put('mem_held_forwarder', 'socat', (await treePss(socatEcho.hops[0].pid ?? -1)) / MB);
        put('mem_held_exposer', 'socat', (await treePss(socatEcho.hops[1].pid ?? -1)) / MB);
        await held.close();
      });
      for (const c of ['kubo', 'tunnel'] as const) {
        const procs = procsOf(c);
        if (procs === undefined) continue;
        await attempt(['mem_held_forwarder', 'mem_held_exposer'], c, async () => {
          const held = await holdConnections(ports('echo')[c], SIZES.held, 32, LIMIT_MS.held);
          await sleep(SIZES.settleMs);
          put('mem_held_forwarder', c, (await rssOf(procs.forwarder)) / MB);
          put('mem_held_exposer', c, (await rssOf(procs.exposer)) / MB);
          if (c === 'tunnel') {
            const active = await forwarder.metric('peertunnel_streams_active', { service: 'echo' });
            notes.push(`forwarder reported ${active} active echo streams while ${SIZES.held} were held`);
          }
          await held.close();
        });
      }
    }

    if (runs('throughput1')) {
      log(`one stream: ${SIZES.oneStream / MiB} MiB, hash checked`);
      for (const c of columns)
        await attempt(['throughput_1'], c, async () => {
          const what = `${c} one-stream throughput`;
          put(
            'throughput_1',
            c,
            await withCpu(c, 'throughput_1', () =>
              throughput(ports('sink')[c], 1, SIZES.oneStream, LIMIT_MS.throughput, what),
            ),
          );
        });
    }

    if (runs('throughput16')) {
      const n = SIZES.manyStreams;
      log(`${n} streams × ${SIZES.manyEach / MiB} MiB, hashes checked`);
      for (const c of columns)
        await attempt(['throughput_16'], c, async () => {
          const what = `${c} ${n}-stream throughput`;
          put(
            'throughput_16',
            c,
            await withCpu(c, 'throughput_16', () =>
              throughput(ports('sink')[c], n, SIZES.manyEach, LIMIT_MS.throughput, what),
            ),
          );
        });
    }
    for (const c of ['tunnel', 'kubo'] as const) {
      const secs = cpuSecs[c];
      for (const node of ['forwarder', 'exposer'] as const) {
        const mib = secs?.throughput_1?.[node];
        if (mib !== undefined) put(`cpu_mib_${node}`, c, (mib * 1000) / (SIZES.oneStream / MiB));
        const rt = secs?.latency?.[node];
        if (rt !== undefined)
          put(`cpu_krt_${node}`, c, (rt * 1000 * 1000) / (SIZES.pingWarmup + SIZES.pingRounds));
      }
    }

    // Write system calls per MiB and per round trip, each node traced on its own (strace slows
    // it down, so these runs give counts only).
    if (HAS_STRACE && (runs('throughput1') || runs('latency'))) {
      log(`write syscalls (strace -c -f): ${SIZES.straceBytes / MiB} MiB, ${SIZES.straceRounds} round trips`);
      for (const c of ['kubo', 'tunnel'] as const) {
        const procs = procsOf(c);
        if (procs === undefined) continue;
        for (const node of ['forwarder', 'exposer'] as const) {
          if (runs('throughput1'))
            await attempt([`writes_mib_${node}`], c, async () => {
              const { writes } = await writeSyscallsDuring(procs[node], () =>
                throughput(ports('sink')[c], 1, SIZES.straceBytes, LIMIT_MS.throughput, `${c} traced upload`),
              );
              put(`writes_mib_${node}`, c, writes / (SIZES.straceBytes / MiB));
            });
          if (runs('latency'))
            await attempt([`writes_rt_${node}`], c, async () => {
              const { writes } = await writeSyscallsDuring(procs[node], () =>
                latency(ports('echo')[c], SIZES.pingSize, 0, SIZES.straceRounds, LIMIT_MS.latency),
              );
              put(`writes_rt_${node}`, c, writes / SIZES.straceRounds);
            });
        }
      }
    } else if (!HAS_STRACE)
      notes.push('write syscalls: not measured, strace is not installed (apt-get install strace)');

    // Read after the measures, once the forwarder has connected: its metrics name what it negotiated.
    if (kuboPair !== undefined && kubo.available)
      kubo.negotiated = await kuboPair
        .negotiated()
        .catch((err: unknown) => `unknown (kubo's metrics unreadable: ${String(err)})`);
  } catch (err) {
    // Say what the nodes were doing before their shutdown changes it.
    for (const d of diagnoses) log(await d());
    throw err;
  } finally {
    for (const c of cleanup) await c().catch(() => undefined);
  }

  const endLoad = loadavg();
  const seconds = (performance.now() - started) / 1000;
  const rows = buildRows(measured, failures);
  const targets = checkTargets(rows);
  const highLoad = Math.max(startLoad[0] ?? 0, endLoad[0] ?? 0) > 0.75 * cores;

  const out: string[] = [];
  out.push(
    `PeerTunnel bench (${QUICK ? 'quick' : 'full'}): Node ${process.version}, ${cores} cores, 127.0.0.1, ${seconds.toFixed(0)} s`,
  );
  out.push(
    `load average (1/5/15 min) at start ${startLoad.map((l) => l.toFixed(2)).join(' ')}, at end ${endLoad.map((l) => l.toFixed(2)).join(' ')}`,
  );
  if (highLoad)
    out.push(
      `WARNING: load was high (1-min load above ${(0.75 * cores).toFixed(1)} on ${cores} cores): other work shared the CPUs, absolute figures are low and noisy`,
    );
  out.push('');
  out.push(formatTable(rows, SIZES.held, kubo.available ? undefined : kubo.reason));
  out.push('');
  out.push(
    `sizes: 1 stream ${SIZES.oneStream / MiB} MiB; ${SIZES.manyStreams} × ${SIZES.manyEach / MiB} MiB; ` +
      `latency ${SIZES.pingRounds} rounds of ${SIZES.pingSize} B after ${SIZES.pingWarmup} warm-up; ` +
      `${SIZES.conns} connections, ${SIZES.connConcurrency} at a time; warm TTFB median of ${SIZES.warmTtfbTries}`,
  );
  out.push(
    'cold TTFB: raw = first connect to a server that just listened; socat = first connect after both hops listen; ' +
      'tunnel = first connect right after the new forwarder reports ready (from connect to the first echoed byte)',
  );
  out.push(
    'memory: tunnel = RSS of the node process; kubo = RSS of the daemon; socat = PSS summed over the hop’s process and its forked children',
  );
  if (kubo.available)
    out.push(
      `kubo p2p: kubo ${kubo.version}, two daemons in one private network (same swarm key), ` +
        `connected directly; negotiated ${kubo.negotiated}; settings: ${kubo.settings.join(', ')}; ` +
        'kubo ends both directions at the first EOF, so no measure relies on half-close (test/bench/framed.ts)',
    );
  for (const [column, byLabel] of Object.entries(cpu))
    for (const [label, c] of Object.entries(byLabel))
      out.push(
        `CPU during ${column} ${label} (cores): forwarder ${c.forwarder.toFixed(2)}, exposer ${c.exposer.toFixed(2)}, bench client+server ${c.bench.toFixed(2)}`,
      );
  for (const n of notes) out.push(`note: ${n}`);
  for (const f of failures) out.push(`FAILED: ${f.row} (${f.column}): ${f.error}`);
  out.push('');
  out.push('targets:');
  for (const t of targets)
    out.push(`  ${t.met === null ? '  ? ' : t.met ? ' met' : 'MISS'}  ${t.target}: ${t.measured}`);
  process.stdout.write(`${out.join('\n')}\n`);
  const operator = runs('operator')
    ? await operatorBench({ quick: QUICK, explicit: ONLY.has('operator'), log })
    : undefined;
  if (operator !== undefined) process.stdout.write(`\n${operator.text}\n`);
  const credentials = runs('credentials')
    ? await credentialsBench({ quick: QUICK, explicit: ONLY.has('credentials'), log })
    : undefined;
  if (credentials !== undefined) process.stdout.write(`\n${credentials.text}\n`);
  // NAT lab group (root + lab prerequisites; otherwise skipped with the reason printed).
  const lab = runs('lab') ? await labBench({ quick: QUICK, explicit: ONLY.has('lab'), log }) : undefined;
  if (lab !== undefined) process.stdout.write(`\n${lab.text}\n`);

  await mkdir(dirname(OUT), { recursive: true });
  await writeFile(
    OUT,
    `${JSON.stringify(
      {
        quick: QUICK,
        node: process.version,
        cores,
        seconds,
        load: { start: startLoad, end: endLoad, high: highLoad },
        sizes: SIZES,
        nodeFlags: RUN_FLAGS,
        strace: HAS_STRACE,
        rows,
        targets,
        cpu,
        kubo,
        notes,
        failures,
        operator,
        credentials,
        lab,
      },
      null,
      2,
    )}\n`,
  );
  log(`results written to ${OUT}`);
  return failures.length === 0 &&
    (operator?.failures.length ?? 0) === 0 &&
    (credentials?.failures.length ?? 0) === 0 &&
    (lab?.failures.length ?? 0) === 0
    ? 0
    : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
