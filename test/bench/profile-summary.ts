/**
 * Summarizes V8 .cpuprofile files (from `BENCH_PROFILE=DIR npm run bench`): where a node process
 * spent its CPU, by layer of the stack (pnet, noise, yamux, ...), by package and by function.
 *
 *   node dist/test/bench/profile-summary.js DIR/*.cpuprofile
 *
 * Self time is attributed to the function on top of the stack. "Inclusive" time of a layer
 * counts every sample with a frame of that layer anywhere on the stack, once per sample, so it
 * includes what the layer calls (e.g. Node's crypto under noise).
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which layer a frame belongs to; first match wins, checked from the top of the stack down. */
const LAYERS: Array<[string, (f: CallFrame) => boolean]> = [
  ['pnet (xsalsa20 PSK cipher)', (f) => /\/xsalsa20\/|@libp2p\/pnet\/|sidecar\/pnet\//.test(f.url)],
  ['noise (ChaCha20-Poly1305)', (f) => /libp2p-noise\/|as-chacha20poly1305|@noble\/ciphers/.test(f.url)],
  ['yamux (framing, windows)', (f) => /libp2p-yamux\//.test(f.url)],
  ['uint8arraylist copies', (f) => /\/uint8arraylist\//.test(f.url)],
  ['libp2p stream/connection plumbing', (f) => /@libp2p\/utils\/|main-event|@libp2p\/tcp\//.test(f.url)],
  ['our pipe.ts', (f) => /\/sidecar\/pipe\.js/.test(f.url)],
  ['our other sidecar code', (f) => /\/sidecar\//.test(f.url)],
  ['prom-client / pino', (f) => /prom-client|pino/.test(f.url)],
  ['other libp2p', (f) => /@libp2p\/|\/libp2p\//.test(f.url)],
  [
    'node:net / streams (socket I/O)',
    (f) => /^node:(net|internal\/stream|internal\/streams|stream)/.test(f.url),
  ],
  ['node:crypto', (f) => /^node:(internal\/)?crypto/.test(f.url)],
];

function packageOf(f: CallFrame): string {
  if (f.url === '') return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(f.url);
  if (m?.[1] !== undefined) return m[1];
  if (f.url.startsWith('node:')) return f.url.replace(/^node:(internal\/)?/, 'node:').split('/')[0] ?? f.url;
  if (f.url.includes('/dist/sidecar/')) return `sidecar/${basename(f.url)}`;
  return f.url;
}

function pct(part: number, total: number): string {
  return `${((100 * part) / total).toFixed(1).padStart(5)}%`;
}

async function summarize(file: string): Promise<string> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const self = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(id, (self.get(id) ?? 0) + dt);
    total += dt;
  });

  const idle = [...self].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)');
  const idleUs = idle.reduce((a, [, t]) => a + t, 0);
  const busy = total - idleUs;

  const bySelfPackage = new Map<string, number>();
  const bySelfFunction = new Map<string, number>();
  const layerSelf = new Map<string, number>();
  const layerInclusive = new Map<string, number>();
  for (const [id, t] of self) {
    const node = byId.get(id);
    if (node === undefined || node.callFrame.functionName === '(idle)') continue;
    const f = node.callFrame;
    const pkg = packageOf(f);
    bySelfPackage.set(pkg, (bySelfPackage.get(pkg) ?? 0) + t);
    const fn = `${f.functionName || '(anonymous)'} ${f.url === '' ? '' : `${basename(f.url)}:${f.lineNumber + 1}`}`;
    bySelfFunction.set(fn, (bySelfFunction.get(fn) ?? 0) + t);

    // Self time goes to the nearest frame (from the top) that belongs to a layer: native code
    // such as a cipher or a memcpy is charged to the JavaScript layer that called it.
    const stack: CallFrame[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (n !== undefined) stack.push(n.callFrame);
    }
    const owner = stack
      .map((frame) => LAYERS.find(([, match]) => match(frame))?.[0])
      .find((l) => l !== undefined);
    const layer = owner ?? (f.functionName === '(garbage collector)' ? '(garbage collector)' : '(other)');
    layerSelf.set(layer, (layerSelf.get(layer) ?? 0) + t);
    const seen = new Set<string>();
    for (const frame of stack)
      for (const [name, match] of LAYERS) if (!seen.has(name) && match(frame)) seen.add(name);
    for (const name of seen) layerInclusive.set(name, (layerInclusive.get(name) ?? 0) + t);
  }

  const top = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([k, t]) => `  ${pct(t, busy)}  ${(t / 1e6).toFixed(2).padStart(7)} s  ${k}`);
  return [
    `== ${basename(file)}: ${(total / 1e6).toFixed(1)} s profiled, ${(busy / 1e6).toFixed(1)} s busy (${pct(busy, total).trim()}), shares below are of busy time`,
    'by layer (self time, native work charged to the nearest layer above it on the stack):',
    ...top(layerSelf, 20),
    'by layer (inclusive: samples with that layer anywhere on the stack):',
    ...top(layerInclusive, 20),
    'by package (self time):',
    ...top(bySelfPackage, 15),
    'by function (self time):',
    ...top(bySelfFunction, 25),
  ].join('\n');
}

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node dist/test/bench/profile-summary.js FILE.cpuprofile...\n');
  process.exit(2);
}
for (const f of files) process.stdout.write(`${await summarize(f)}\n\n`);
