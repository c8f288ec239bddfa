/**
 * The workload of the two-cluster test, with Debian's redis tools run inside pods (`kubectl exec`):
 * redis-benchmark through the forward, known keys written through it and read back on the server
 * directly, connection counts per server, and a bounded loop of fresh connections.
 */
import type { PodExec } from './pods.js';

export const REDIS_PORT = 6379;
const HOST = '127.0.0.1';

export interface BenchmarkLine {
  test: string;
  rps: number;
  p50Ms: number;
}

/** `redis-benchmark --csv` output: one line per test after the header. */
export function parseBenchmarkCsv(text: string): BenchmarkLine[] {
  return text
    .split(/\r?\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l.startsWith('"') && !l.startsWith('"test"'))
    .map((l) => {
      const f = l.split(',').map((x) => x.replace(/^"|"$/g, ''));
      return { test: f[0] ?? '', rps: Number(f[1]), p50Ms: Number(f[4]) };
    });
}

/** redis-benchmark against the pod's own 127.0.0.1:6379 (bounded: `requests` per test). */
export async function benchmark(
  pod: PodExec,
  container: string,
  requests: number,
): Promise<{ lines: BenchmarkLine[]; code: number | null; stderr: string }> {
  const r = await pod.exec(
    container,
    [
      'redis-benchmark',
      '-h',
      HOST,
      '-p',
      String(REDIS_PORT),
      '-n',
      String(requests),
      '-c',
      '8',
      '-t',
      'set,get',
      '--csv',
    ],
    { timeoutMs: 120_000 },
  );
  return { lines: parseBenchmarkCsv(r.stdout), code: r.code, stderr: r.stderr };
}

/** RESP for a SET, as `redis-cli --pipe` expects (the mass insertion format). */
function respSet(key: string, value: string): string {
  const parts = ['SET', key, value];
  return `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}\r\n`).join('')}`;
}

/** Writes the keys with `redis-cli --pipe` through 127.0.0.1:6379; returns errors and replies. */
export async function writeKeys(
  pod: PodExec,
  container: string,
  keys: ReadonlyMap<string, string>,
): Promise<{ errors: number; replies: number; output: string }> {
  const input = [...keys].map(([k, v]) => respSet(k, v)).join('');
  const r = await pod.exec(container, ['redis-cli', '-h', HOST, '-p', String(REDIS_PORT), '--pipe'], {
    input,
    timeoutMs: 60_000,
  });
  const m = /errors: (\d+), replies: (\d+)/.exec(r.stdout);
  return { errors: Number(m?.[1] ?? -1), replies: Number(m?.[2] ?? -1), output: `${r.stdout}${r.stderr}` };
}

/** MGET on the server's own 127.0.0.1:6379 (no tunnel): the values, in the keys' order ('' = nil). */
export async function readKeys(pod: PodExec, container: string, keys: readonly string[]): Promise<string[]> {
  const r = await pod.exec(container, ['redis-cli', '-h', HOST, '-p', String(REDIS_PORT), 'MGET', ...keys], {
    timeoutMs: 30_000,
  });
  if (r.code !== 0) throw new Error(`redis-cli MGET exited ${r.code}: ${r.stderr}`);
  return r.stdout.replace(/\n$/, '').split('\n');
}

/** INFO stats total_connections_received of the server in the pod (this call counts as one). */
export async function connectionsReceived(pod: PodExec, container: string): Promise<number> {
  const r = await pod.exec(container, ['redis-cli', '-h', HOST, '-p', String(REDIS_PORT), 'INFO', 'stats'], {
    timeoutMs: 30_000,
  });
  const m = /total_connections_received:(\d+)/.exec(r.stdout);
  if (m === null) throw new Error(`no total_connections_received in INFO stats: ${r.stdout} ${r.stderr}`);
  return Number(m[1]);
}

/**
 * `n` new connections one after another, each a PING through 127.0.0.1:6379 with a 10 s bound;
 * returns how many answered PONG (every other one is a failure) and each one's duration in ms
 * (logged, not asserted: the benchmarks measure speed).
 */
export async function pingConnections(
  pod: PodExec,
  container: string,
  n: number,
): Promise<{ ok: number; failed: number; ms: number[]; output: string }> {
  const script = `i=0; while [ $i -lt ${n} ]; do s=$(date +%s%N); timeout 10 redis-cli -h ${HOST} -p ${REDIS_PORT} PING || echo FAILED; e=$(date +%s%N); echo "ms $(( (e - s) / 1000000 ))"; i=$((i+1)); done`;
  const r = await pod.exec(container, ['sh', '-c', script], { timeoutMs: n * 11_000 });
  const lines = r.stdout.split('\n').map((l) => l.trim());
  const ok = lines.filter((l) => l === 'PONG').length;
  const ms = lines.filter((l) => l.startsWith('ms ')).map((l) => Number(l.slice(3)));
  return { ok, failed: n - ok, ms, output: `${r.stdout.slice(-2000)}${r.stderr.slice(-2000)}` };
}
