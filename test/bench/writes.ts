/**
 * Write syscalls of a forwarder and an exposer under `strace -f -c` (client -> forwarder ->
 * exposer -> server on 127.0.0.1, a relay as bootstrap): per 64 B round trip and per MiB carried.
 * Each workload runs in fresh processes; an idle run (start, one round trip, stop) is subtracted.
 * Bounded: 2,000 round trips, 64 MiB, 120 s per run.
 *   npm run build && node dist/test/bench/writes.js
 */
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';

const KEY_ENV = 'PEERTUNNEL_BENCH_SWARM_KEY';
const ROUND_TRIPS = 2_000;
const MIB = 64;
const RUN_LIMIT_MS = 120_000;
const WRITE_CALLS = ['write', 'writev', 'sendmsg', 'sendto', 'sendmmsg'];

type Workload = 'idle' | 'rtt' | 'bulk';

function server(): Promise<net.Server> {
  // echo for round trips; for bulk, count and answer 'k' after the client's FIN
  const s = net.createServer((c) => {
    c.setNoDelay(true);
    let bulk = false;
    c.on('data', (d) => {
      if (!bulk && d[0] === 0x42) bulk = true;
      if (!bulk) c.write(d);
    });
    c.on('end', () => (bulk ? c.end('k') : c.end()));
    c.on('error', () => {});
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(s)));
}

function portOf(s: net.Server): number {
  const a = s.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

async function connect(port: number): Promise<net.Socket> {
  const c = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await once(c, 'connect');
  return c;
}

async function roundTrips(port: number, n: number): Promise<void> {
  const c = await connect(port);
  const msg = Buffer.alloc(64, 1);
  for (let i = 0; i < n; i++) {
    c.write(msg);
    let got = 0;
    while (got < msg.length) {
      const [d] = (await once(c, 'data')) as [Buffer];
      got += d.length;
    }
  }
  c.end();
  c.destroy();
}

async function bulk(port: number, mib: number): Promise<void> {
  const c = await connect(port);
  const chunk = Buffer.alloc(64 * 1024, 0x42);
  for (let i = 0; i < mib * 16; i++) if (!c.write(chunk)) await once(c, 'drain');
  c.end();
  const [d] = (await once(c, 'data')) as [Buffer];
  if (d.toString() !== 'k') throw new Error('bulk transfer not acknowledged');
  c.destroy();
}

/** Write calls in a `strace -c` summary. */
function writesIn(summary: string): number {
  let n = 0;
  for (const line of summary.split('\n')) {
    const f = line.trim().split(/\s+/);
    const name = f[f.length - 1];
    if (name !== undefined && WRITE_CALLS.includes(name) && f.length >= 5) n += Number(f[3]);
  }
  return n;
}

async function run(workload: Workload): Promise<{ forwarder: number; exposer: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'pt-writes-'));
  const env = { [KEY_ENV]: testSwarmKey() };
  const base = {
    swarmKey: { env: KEY_ENV },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    log: { level: 'info' as const },
  };
  const strace = (name: string) => [
    'strace',
    '-f',
    '-c',
    '-o',
    join(dir, name),
    '-e',
    `trace=${WRITE_CALLS.join(',')}`,
  ];
  const target = await server();
  const nodes: NodeProcess[] = [];
  const timer = setTimeout(() => {
    for (const n of nodes) n.proc.kill('SIGKILL');
  }, RUN_LIMIT_MS);
  try {
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    nodes.push(relay);
    const exposer = await startNodeProcess(
      { ...base, bootstrap: relay.addresses, expose: [{ name: 'echo', port: portOf(target) }] },
      { env, prefix: strace('exposer') },
    );
    nodes.push(exposer);
    await exposer.waitFor((l) => l.event === 'service_announced' && l.service === 'echo', 30_000);
    const localPort = await freePort();
    const forwarder = await startNodeProcess(
      { ...base, bootstrap: relay.addresses, forward: [{ name: 'echo', localPort }] },
      { env, prefix: strace('forwarder') },
    );
    nodes.push(forwarder);
    for (let i = 0; !(await forwarder.status()).ready; i++) {
      if (i > 600) throw new Error('forwarder not ready');
      await new Promise((r) => setTimeout(r, 50));
    }
    await roundTrips(localPort, 1);
    if (workload === 'rtt') await roundTrips(localPort, ROUND_TRIPS);
    if (workload === 'bulk') await bulk(localPort, MIB);
    await forwarder.stop();
    await exposer.stop();
    await relay.stop();
    return {
      forwarder: writesIn(await readFile(join(dir, 'forwarder'), 'utf8')),
      exposer: writesIn(await readFile(join(dir, 'exposer'), 'utf8')),
    };
  } finally {
    clearTimeout(timer);
    for (const n of nodes) n.proc.kill('SIGKILL');
    target.close();
    await rm(dir, { recursive: true, force: true });
  }
}

const idle = await run('idle');
const rtt = await run('rtt');
const bulkRun = await run('bulk');
for (const who of ['forwarder', 'exposer'] as const) {
  const perRtt = (rtt[who] - idle[who]) / ROUND_TRIPS;
  const perMiB = (bulkRun[who] - idle[who]) / MIB;
  console.log(
    `${who}: write syscalls per 64 B round trip ${perRtt.toFixed(2)}, per MiB ${perMiB.toFixed(1)} ` +
      `(idle ${idle[who]}, ${ROUND_TRIPS} round trips ${rtt[who]}, ${MIB} MiB ${bulkRun[who]})`,
  );
}
