/**
 * `peertunnel node` from the bundle (as the image runs it) loads only what its configuration uses:
 * every file Node loads (import and require alike, through a module.registerHooks hook put in with
 * NODE_OPTIONS=--import) is recorded, and mapped back to the packages bundled into it through the
 * build's metafile. With port mapping off neither the port mapper (its UPnP/NAT-PMP XML stack)
 * nor the YAML parser (for a JSON config) is loaded; the Kubernetes client never is. With NAT-PMP
 * on (its gateway a closed port on 127.0.0.1) the port mapper is loaded: the recording sees it.
 * Either way nothing is loaded from outside dist/bundle/ (the image copies that alone).
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import { BUNDLE_PATH } from '../../sidecar/node/flags.js';
import { followJsonLog, REPO_ROOT, testSwarmKey } from '../helpers/node-process.js';

const NODE24_DIR = join(REPO_ROOT, 'node_modules', '.bin');

/** Records the URL of every module Node loads; written as JSON lines when the process exits. */
const HOOK = `
import { registerHooks } from 'node:module';
import { writeFileSync } from 'node:fs';
const loaded = new Set();
registerHooks({
  load(url, context, nextLoad) {
    loaded.add(url);
    return nextLoad(url, context);
  },
});
process.on('exit', () => writeFileSync(process.env.PT_LOADED_FILE, [...loaded].join('\\n')));
`;

interface Metafile {
  outputs: Record<string, { inputs: Record<string, unknown> }>;
}

/** The npm package a path under node_modules belongs to (`@scope/name` or `name`). */
function packageOf(path: string): string | undefined {
  const m = /(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  return m?.[1];
}

describe('peertunnel node from the bundle', () => {
  let dir = '';
  let hook = '';
  let meta: Metafile;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-loads-'));
    hook = join(dir, 'record-loads.mjs');
    await writeFile(hook, HOOK);
    await writeFile(join(dir, 'swarm.key'), testSwarmKey());
    meta = JSON.parse(await readFile(join(REPO_ROOT, 'dist', 'bundle-meta.json'), 'utf8')) as Metafile;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Starts the node, waits until it is up, stops it; returns the packages it loaded. */
  async function packagesLoaded(
    name: string,
    config: Partial<NodeConfigInput>,
    upEvent = 'node_started',
    settleMs = 0,
  ): Promise<Set<string>> {
    const configFile = join(dir, `${name}.json`);
    const loadedFile = join(dir, `${name}.loaded`);
    await writeFile(
      configFile,
      JSON.stringify({
        swarmKey: { file: join(dir, 'swarm.key') },
        listen: ['/ip4/127.0.0.1/tcp/0'],
        admin: { listen: '127.0.0.1:0' },
        ...config,
      }),
    );
    const proc = spawn(join(REPO_ROOT, BUNDLE_PATH), ['node', '--config', configFile], {
      env: {
        ...process.env,
        PATH: `${NODE24_DIR}:${process.env.PATH ?? ''}`,
        NODE_OPTIONS: `--import ${pathToFileURL(hook).href}`,
        PT_LOADED_FILE: loadedFile,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = followJsonLog<{ event?: string }>(proc, {
      timeoutMs: 20_000,
      timeoutError: (ms, _l, stderr) => new Error(`no node_started in ${ms} ms: ${stderr.slice(-500)}`),
      exitError: (code, _l, stderr) => new Error(`node exited with ${code}: ${stderr.slice(-500)}`),
    });
    await log.waitFor((l) => l.event === upEvent);
    await new Promise((r) => setTimeout(r, settleMs));
    proc.kill('SIGTERM');
    expect(await log.exited).toBe(0);
    const urls = (await readFile(loadedFile, 'utf8')).split('\n').filter((u) => u.startsWith('file:'));
    const packages = new Set<string>();
    for (const url of urls) {
      const file = relative(REPO_ROOT, fileURLToPath(url));
      const own = packageOf(file);
      if (own !== undefined) packages.add(own);
      // A file of the bundle: the packages esbuild put into it.
      for (const input of Object.keys(meta.outputs[file]?.inputs ?? {})) {
        const p = packageOf(input);
        if (p !== undefined) packages.add(p);
      }
    }
    // A module the bundle cannot load shows up as an error in a log line (the port mapper catches it).
    expect(log.logs.map((l) => JSON.stringify(l)).filter((l) => /Cannot find|ERR_MODULE/.test(l))).toEqual(
      [],
    );
    // The recording works: the bundle's own entry and libp2p were seen.
    expect(urls.some((u) => fileURLToPath(u) === join(REPO_ROOT, BUNDLE_PATH))).toBe(true);
    expect(packages.has('libp2p')).toBe(true);
    // The bundle is the whole application (the image copies nothing else): every module loaded
    // is one of its files, its native addon (dist/bundle/node_modules/) included.
    const bundleDir = dirname(join(REPO_ROOT, BUNDLE_PATH));
    const outside = urls
      .map((u) => fileURLToPath(u))
      .filter((f) => f !== hook && !f.startsWith(`${bundleDir}/`));
    expect(outside).toEqual([]);
    expect(packages.has('sodium-native')).toBe(true);
    return packages;
  }

  it('with port mapping off loads neither the port mapper, the YAML parser nor the Kubernetes client', async () => {
    const loaded = await packagesLoaded('off', { nat: { upnp: false, natPmp: false } });
    expect([...loaded].filter((p) => /nat-port-mapper|^@kubernetes\/|^yaml$|xml/.test(p))).toEqual([]);
  }, 60_000);

  it('with NAT-PMP on loads the port mapper', async () => {
    // The gateway is a closed UDP port on this machine: the mapper loads its clients and asks
    // (on UDP, on 127.0.0.1) while the node runs for 2 s more.
    const loaded = await packagesLoaded(
      'natpmp',
      { nat: { natPmp: true, gateway: '127.0.0.1' } },
      'port_mapping_searching',
      2_000,
    );
    expect(loaded.has('@achingbrain/nat-port-mapper')).toBe(true);
    expect([...loaded].filter((p) => p.startsWith('@kubernetes/'))).toEqual([]);
  }, 60_000);
});
