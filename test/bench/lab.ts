/**
 * Bench group `lab`: the tunnel through the NAT lab's routers (needs root; skipped with a reason
 * otherwise).
 *
 *   relay0 203.0.113.10   role relay; also runs a plain TCP server on 0.0.0.0 (the "plain" column)
 *   site a (eim)          a/0: exposes sink and source (servers on 127.0.0.1 inside a/0)
 *   site b (eim)          b/0: forwards them; its path to a/0 is relayed first, then hole-punched
 *   site s (symmetric)    s/0: forwards them; its path stays relayed
 *
 * Columns:
 * - relayed: s/0 → NAT s → backbone → relay0 → backbone → NAT a → a/0, inside the tunnel.
 * - direct: b/0 → NAT b → backbone → NAT a → a/0, the hole-punched tunnel connection.
 * - plain: b/0 → NAT b → backbone → relay0's plain server, no tunnel. Two NATs that drop unsolicited
 *   inbound traffic cannot be crossed without the tunnel (that is the point), so plain routing is
 *   measured to the reachable host through the same router and backbone: one NAT instead of two,
 *   no relay hop. It is the ceiling of what the lab's links and routers carry.
 * Every column uses the same client (a hash-checked keystream over one TCP connection): upload =
 * client → sink, answered with the sha256 the sink saw; download = source → client, checked against
 * the expected sha256. TTFB = connect to first byte of a 1 KiB download (median of N, warm).
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LabNodeProcess, startLabNode } from '../helpers/lab-node.js';
import { eventually, testSwarmKey } from '../helpers/node-process.js';
import { LineReader } from '../lab/exec.js';
import { createLab, type Lab, type LabHost } from '../lab/lab.js';

const MiB = 1024 * 1024;
const KEY_ENV = 'PEERTUNNEL_SWARM_KEY';
const PORTS = { sink: 7001, source: 7003 } as const;
const LOCAL = { sink: 15001, source: 15003 } as const;
const PLAIN = { sink: 7101, source: 7103 } as const;

/**
 * What stops the lab here (empty: it can run). test/lab/prereq.ts has the full check but imports
 * jest; this is the same for the parts this group uses (no miniupnpd).
 */
function missingPrerequisites(): string[] {
  if (process.platform !== 'linux')
    return [`Linux network namespaces are needed (platform is ${process.platform})`];
  if (process.getuid?.() !== 0) return ['must run as root (network namespaces, veth pairs, iptables)'];
  const missing = ['ip', 'iptables-nft-restore'].filter(
    (p) => spawnSync('sh', ['-c', `command -v ${p}`], { timeout: 5_000 }).status !== 0,
  );
  if (missing.length > 0) return missing.map((p) => `${p} not found (apt-get install iproute2 iptables)`);
  const probe = `ptlab-probe-${process.pid}`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8', timeout: 5_000 });
  if (add.status !== 0) return [`cannot create a network namespace: ${(add.stderr ?? '').trim()}`];
  spawnSync('ip', ['netns', 'delete', probe], { timeout: 5_000 });
  return [];
}

export interface LabBenchOptions {
  quick: boolean;
  /** Named in BENCH_ONLY: runs in quick mode too. */
  explicit: boolean;
  log: (msg: string) => void;
}

export interface LabBenchResult {
  skipped?: string;
  sizes?: { bulk: number; ttfbTries: number };
  /** By measure, then column (relayed, direct, plain); ms or MiB/s. */
  figures: Record<string, Record<string, number>>;
  failures: string[];
  notes: string[];
  text: string;
}

/**
 * The client and servers, written to a temp file and run inside namespaces. Protocol of
 * test/lab/tools/traffic.ts (which binds and dials 127.0.0.1 only; the plain column needs the
 * relay's address):
 *   serve <host> <port> sink|source    |   upload <host> <port> <bytes>   |   download <host> <port> <bytes>
 */
const TOOL = `
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
const CHUNK = 1024 * 1024;
const [mode, host, portArg, arg] = process.argv.slice(2);
const port = Number(portArg);
const keystream = (seed) => {
  const c = createCipheriv('aes-128-ctr', seed, Buffer.alloc(16));
  const zeros = Buffer.alloc(CHUNK);
  return (n) => c.update(n === CHUNK ? zeros : Buffer.alloc(n));
};
const expected = (seed, total) => {
  const next = keystream(seed); const h = createHash('sha256');
  for (let left = total; left > 0; left -= CHUNK) h.update(next(Math.min(CHUNK, left)));
  return h.digest('hex');
};
async function write(s, seed, total, h) {
  const next = keystream(seed);
  for (let left = total; left > 0; left -= CHUNK) {
    const b = next(Math.min(CHUNK, left)); h?.update(b);
    if (!s.write(b)) await new Promise((res, rej) => { s.once('drain', res); s.once('close', () => rej(new Error('closed'))); });
  }
}
const out = (r, ok) => { process.stdout.write(JSON.stringify({ ok, ...r }) + '\\n'); process.exit(ok ? 0 : 1); };
const dial = () => new Promise((res, rej) => { const s = connect({ host, port, noDelay: true, allowHalfOpen: true }); s.once('connect', () => res(s)); s.once('error', rej); });
if (mode === 'serve') {
  createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    s.on('error', () => s.destroy());
    if (arg === 'sink') {
      const h = createHash('sha256'); let n = 0;
      s.on('data', (d) => { n += d.length; h.update(d); });
      s.on('end', () => s.end(h.digest('hex') + ' ' + n + '\\n'));
    } else {
      let head = '';
      const onData = (d) => {
        head += d.toString('latin1'); const nl = head.indexOf('\\n'); if (nl < 0) return;
        s.off('data', onData);
        const [seed, bytes] = head.slice(0, nl).split(' ');
        write(s, Buffer.from(seed, 'hex'), Number(bytes)).then(() => s.end(), () => s.destroy());
      };
      s.on('data', onData);
    }
  }).listen({ host, port }, () => process.stdout.write('listening ' + port + '\\n'));
} else if (mode === 'upload') {
  const total = Number(arg); const seed = randomBytes(16); const h = createHash('sha256');
  const t0 = performance.now(); const s = await dial(); const parts = [];
  const reply = new Promise((res, rej) => { s.on('data', (d) => parts.push(d)); s.once('end', () => res(Buffer.concat(parts).toString())); s.once('error', rej); });
  await write(s, seed, total, h); s.end();
  const [answered, n] = (await reply).trim().split(' '); const ms = performance.now() - t0;
  out({ ms, bytes: Number(n) }, answered === h.digest('hex') && Number(n) === total);
} else if (mode === 'download') {
  const total = Number(arg); const seed = randomBytes(16); const h = createHash('sha256');
  const t0 = performance.now(); const s = await dial(); let n = 0; let ttfbMs = null;
  const done = new Promise((res, rej) => { s.on('data', (d) => { ttfbMs ??= performance.now() - t0; n += d.length; h.update(d); }); s.once('end', res); s.once('error', rej); });
  s.write(seed.toString('hex') + ' ' + total + '\\n'); await done; s.end();
  const ms = performance.now() - t0;
  out({ ms, ttfbMs, bytes: n }, n === total && h.digest('hex') === expected(seed, total));
}
`;

interface ToolResult {
  ok: boolean;
  ms?: number;
  ttfbMs?: number | null;
  bytes?: number;
  error?: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : (s[Math.floor((s.length - 1) / 2)] ?? Number.NaN);
};

export async function labBench(o: LabBenchOptions): Promise<LabBenchResult> {
  const skip = (skipped: string): LabBenchResult => ({
    skipped,
    figures: {},
    failures: [],
    notes: [],
    text: `Lab bench (NAT lab): SKIPPED: ${skipped}`,
  });
  if (o.quick && !o.explicit) return skip('quick mode (name `lab` in BENCH_ONLY to run it)');
  const missing = missingPrerequisites();
  if (missing.length > 0) return skip(missing.join('; '));

  const bulk = (o.quick ? 32 : 256) * MiB;
  const ttfbTries = o.quick ? 5 : 20;
  const figures: Record<string, Record<string, number>> = {};
  const failures: string[] = [];
  const notes: string[] = [];
  const put = (measure: string, column: string, v: number) => {
    figures[measure] = { ...figures[measure], [column]: v };
  };
  const dir = await mkdtemp(join(tmpdir(), 'ptbench-lab-'));
  const tool = join(dir, 'traffic.mjs');
  await writeFile(tool, TOOL);
  const env = { [KEY_ENV]: testSwarmKey() };
  let lab: Lab | undefined;
  const nodes: LabNodeProcess[] = [];

  const run = async (host: LabHost, args: string[], timeoutMs: number): Promise<ToolResult> => {
    const r = await host.exec(process.execPath, [tool, ...args], { timeoutMs });
    try {
      return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as ToolResult;
    } catch {
      return { ok: false, error: `exit ${r.code}: ${r.stderr.slice(-300)}` };
    }
  };
  const serve = async (host: LabHost, ip: string, port: number, kind: string) => {
    const child = host.spawnNode(tool, ['serve', ip, String(port), kind]);
    await new LineReader(child, `${kind} server`).next((l) => l.startsWith('listening'), 10_000, 'listening');
  };
  /** One measure for one column; a failure is recorded, not thrown. */
  const measure = async (
    what: string,
    column: string,
    host: LabHost,
    ip: string,
    ports: { sink: number; source: number },
  ) => {
    try {
      if (what === 'ttfb') {
        const xs: number[] = [];
        for (let i = 0; i < ttfbTries; i++) {
          const r = await run(host, ['download', ip, String(ports.source), '1024'], 15_000);
          if (!r.ok || typeof r.ttfbMs !== 'number') throw new Error(r.error ?? 'download failed');
          xs.push(r.ttfbMs);
        }
        put('ttfb_warm', column, median(xs));
        return;
      }
      const limit = o.quick ? 60_000 : 300_000;
      const r =
        what === 'upload'
          ? await run(host, ['upload', ip, String(ports.sink), String(bulk)], limit)
          : await run(host, ['download', ip, String(ports.source), String(bulk)], limit);
      if (!r.ok || r.ms === undefined) throw new Error(r.error ?? `${what}: hash or byte count mismatch`);
      put(`throughput_${what}`, column, bulk / MiB / (r.ms / 1000));
    } catch (err) {
      failures.push(`${what} (${column}): ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  try {
    o.log('lab: building the NAT lab');
    lab = await createLab({
      relays: 1,
      sites: [
        { name: 'a', nat: 'eim' },
        { name: 'b', nat: 'eim' },
        { name: 's', nat: 'symmetric' },
      ],
    });
    const l = lab;
    for (const [kind, port] of Object.entries(PORTS)) await serve(l.host('a'), '127.0.0.1', port, kind);
    for (const [kind, port] of Object.entries(PLAIN)) await serve(l.relay(0), '0.0.0.0', port, kind);
    const base = {
      swarmKey: { env: KEY_ENV },
      listen: ['/ip4/0.0.0.0/tcp/4001'],
      publicRanges: [...l.publicRanges],
    };
    const relay = await startLabNode(l.relay(0), { ...base, role: 'relay' }, { env });
    nodes.push(relay);
    const bootstrap = [`/ip4/${l.relay(0).ip}/tcp/4001/p2p/${relay.peerId}`];
    const exposer = await startLabNode(
      l.host('a'),
      { ...base, bootstrap, expose: Object.entries(PORTS).map(([name, port]) => ({ name, port })) },
      { env },
    );
    nodes.push(exposer);
    await eventually(
      async () => ((await exposer.status()).dht.announced ? true : undefined),
      20_000,
      'announce',
    );
    const forwards = Object.entries(LOCAL).map(([name, localPort]) => ({ name, localPort }));
    const relayBytes = () => relay.metric('peertunnel_relay_relayed_bytes_total');

    // Relayed: s/0 behind the symmetric NAT. Cold TTFB = first connection after the node is up.
    const sym = await startLabNode(l.host('s'), { ...base, bootstrap, forward: forwards }, { env });
    nodes.push(sym);
    const hasProvider = (n: LabNodeProcess) =>
      eventually(
        async () => ((await n.status()).forwards.every((f) => f.providers.length > 0) ? true : undefined),
        20_000,
        'providers known',
      );
    await hasProvider(sym);
    const cold = await run(l.host('s'), ['download', '127.0.0.1', String(LOCAL.source), '1024'], 30_000);
    if (cold.ok && typeof cold.ttfbMs === 'number') put('ttfb_cold', 'relayed', cold.ttfbMs);
    else failures.push(`ttfb_cold (relayed): ${cold.error ?? 'failed'}`);
    const symPath = (await sym.status()).peers.find((p) => p.peer === exposer.peerId)?.path;
    if (symPath !== 'relayed') notes.push(`symmetric site's path was ${symPath}, not relayed`);
    const relayedBefore = await relayBytes();
    await measure('ttfb', 'relayed', l.host('s'), '127.0.0.1', LOCAL);
    await measure('upload', 'relayed', l.host('s'), '127.0.0.1', LOCAL);
    await measure('download', 'relayed', l.host('s'), '127.0.0.1', LOCAL);
    notes.push(`relayed column: relay0 carried ${((await relayBytes()) - relayedBefore) / MiB} MiB`);
    await sym.stop();

    // Direct: b/0 behind an eim NAT; first connection relayed, then hole-punched.
    const eim = await startLabNode(l.host('b'), { ...base, bootstrap, forward: forwards }, { env });
    nodes.push(eim);
    await hasProvider(eim);
    const first = await run(l.host('b'), ['download', '127.0.0.1', String(LOCAL.source), '1024'], 30_000);
    if (first.ok && typeof first.ttfbMs === 'number') put('ttfb_cold', 'direct', first.ttfbMs);
    else failures.push(`ttfb_cold (direct): ${first.error ?? 'failed'}`);
    try {
      await eim.waitFor(
        (x) => x.event === 'path_changed' && x.peer === exposer.peerId && x.path === 'hole_punched',
        15_000,
      );
      await eventually(
        async () =>
          (await eim.status()).forwards.find((f) => f.name === 'source')?.providers[0]?.path ===
          'hole_punched'
            ? true
            : undefined,
        5_000,
        'forward on the hole-punched connection',
      );
      const directBefore = await relayBytes();
      await measure('ttfb', 'direct', l.host('b'), '127.0.0.1', LOCAL);
      await measure('upload', 'direct', l.host('b'), '127.0.0.1', LOCAL);
      await measure('download', 'direct', l.host('b'), '127.0.0.1', LOCAL);
      const carried = (await relayBytes()) - directBefore;
      notes.push(`direct column: relay0 carried ${carried} bytes of it`);
      if (carried > MiB) failures.push(`direct column went through the relay (${carried} bytes)`);
    } catch (err) {
      failures.push(`hole punch (direct): ${err instanceof Error ? err.message : String(err)}`);
    }

    // Plain: b/0 → relay0's plain server, no tunnel (through NAT b and the backbone).
    await measure('ttfb', 'plain', l.host('b'), l.relay(0).ip, PLAIN);
    await measure('upload', 'plain', l.host('b'), l.relay(0).ip, PLAIN);
    await measure('download', 'plain', l.host('b'), l.relay(0).ip, PLAIN);
  } catch (err) {
    failures.push(`lab: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    for (const n of nodes) await n.stop().catch(() => undefined);
    await lab?.stop().catch((err: unknown) => failures.push(`lab cleanup: ${String(err)}`));
    await rm(dir, { recursive: true, force: true });
  }

  const cols = ['relayed', 'direct', 'plain'] as const;
  const rows: Array<[string, string, string, number]> = [
    ['ttfb_cold', 'time to first byte, cold (first conn)', 'ms', 1],
    ['ttfb_warm', 'time to first byte, warm (median)', 'ms', 2],
    ['throughput_upload', `throughput up, 1 × ${bulk / MiB} MiB`, 'MiB/s', 1],
    ['throughput_download', `throughput down, 1 × ${bulk / MiB} MiB`, 'MiB/s', 1],
  ];
  const cell = (v: number | undefined, d: number) =>
    v === undefined || Number.isNaN(v) ? '—' : v.toFixed(d);
  const lines = [
    'Lab bench (NAT lab, network namespaces; relayed = tunnel via relay0 from a symmetric NAT; direct = hole-punched tunnel between two eim NATs; plain = no tunnel, eim-NATed host to the relay host)',
    `${'measure'.padEnd(42)}${'unit'.padEnd(7)}${cols.map((c) => c.padStart(10)).join('')}${'direct/plain'.padStart(14)}`,
  ];
  for (const [id, label, unit, d] of rows) {
    const f = figures[id] ?? {};
    const ratio = f.direct !== undefined && f.plain !== undefined ? (f.direct / f.plain).toFixed(2) : '—';
    lines.push(
      `${label.padEnd(42)}${unit.padEnd(7)}${cols.map((c) => cell(f[c], d).padStart(10)).join('')}${ratio.padStart(14)}`,
    );
  }
  lines.push(
    'cold: first forwarded connection of a new forwarder once discovery found the provider (a libp2p connection may already be open then); ' +
      'relayed = from the symmetric site; direct = from the eim site, before the upgrade (so itself relayed); plain has none',
  );
  for (const n of notes) lines.push(`note: ${n}`);
  for (const f of failures) lines.push(`FAILED: ${f}`);
  return { sizes: { bulk, ttfbTries }, figures, failures, notes, text: lines.join('\n') };
}
