/**
 * The Dockerfile, checked as far as a machine without a container engine allows: it is parsed
 * (stages, COPY, RUN, USER, ENTRYPOINT), the build stage is replayed in a temp dir holding only
 * what that stage copies, and the runtime stage is replayed in another temp dir: it runs nothing
 * (no `npm ci`) and copies the bundle alone from the build stage. The CLI must then start from
 * there (help, keygen, cid, operator --help, a short demo through libp2p): no node_modules but
 * the bundle's own (its native addon) and no uncopied file is needed at run time. The built
 * image's layers are checked by test/integration/image.test.ts.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { BUNDLE_PATH, IMAGE_UID, NODE_FLAGS } from '../../sidecar/node/flags.js';
import { REPO_ROOT } from '../helpers/node-process.js';

const run = promisify(execFile);
/** Node 24 from the pinned `node` devDependency (the system Node may be older). */
const NODE24 = join(REPO_ROOT, 'node_modules', '.bin', 'node');

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  from: string;
  name?: string;
  workdir: string;
  instructions: Instruction[];
}

/** Dockerfile instructions per stage: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i] ?? '';
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.trimEnd().endsWith('\\') && i + 1 < lines.length) {
      line = `${line.trimEnd().slice(0, -1)} ${(lines[++i] ?? '').trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (m === null) throw new Error(`Dockerfile line ${start}: cannot parse "${line}"`);
    const op = (m[1] ?? '').toUpperCase();
    const args = (m[2] ?? '').trim();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      stages.push({ from: f?.[1] ?? args, name: f?.[2], workdir: '/', instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) throw new Error(`Dockerfile line ${start}: ${op} before FROM`);
    if (op === 'WORKDIR') stage.workdir = args;
    stage.instructions.push({ op, args, line: start });
  }
  return stages;
}

interface Copy {
  from?: string;
  sources: string[];
  dest: string;
  line: number;
}
function copiesOf(stage: Stage): Copy[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const paths = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '', line: i.line };
    });
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

describe('Dockerfile', () => {
  let stages: Stage[];
  let build: Stage;
  let runtime: Stage;
  let dockerignore: string[];
  const temps: string[] = [];
  let buildDir = '';
  let appDir = '';

  beforeAll(async () => {
    stages = parseDockerfile(await readFile(join(REPO_ROOT, 'Dockerfile'), 'utf8'));
    dockerignore = (await readFile(join(REPO_ROOT, '.dockerignore'), 'utf8'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    const b = stages.find((s) => s.name === 'build');
    const r = stages.at(-1);
    if (b === undefined || r === undefined) throw new Error('expected a "build" stage and a final stage');
    build = b;
    runtime = r;
  });

  afterAll(async () => {
    await Promise.all(temps.map((t) => rm(t, { recursive: true, force: true })));
  });

  it('is multi-stage on Node 24 slim, runs as a numeric non-root user, entrypoint is the bundled CLI', () => {
    expect(stages.map((s) => s.from)).toEqual(['node:24-slim', 'node:24-slim']);
    const user = runtime.instructions.filter((i) => i.op === 'USER').at(-1)?.args;
    expect(user).toMatch(/^[0-9]+(:[0-9]+)?$/);
    expect(Number(user?.split(':')[0])).toBe(IMAGE_UID);
    const entry = runtime.instructions.find((i) => i.op === 'ENTRYPOINT');
    // The bundle itself, run through its first line (which carries the Node flags).
    expect(JSON.parse(entry?.args ?? 'null')).toEqual([`${runtime.workdir}/${BUNDLE_PATH}`]);
    expect(JSON.parse(runtime.instructions.find((i) => i.op === 'CMD')?.args ?? 'null')).toEqual(['--help']);
    // Read-only root filesystem: HOME points at /tmp (the only writable place), no VOLUME needed.
    expect(runtime.instructions.find((i) => i.op === 'ENV')?.args).toMatch(/HOME=\/tmp/);
    expect(runtime.instructions.some((i) => i.op === 'VOLUME')).toBe(false);
  });

  it('copies only paths that exist in the repository and are not excluded by .dockerignore', async () => {
    const local = stages.flatMap((s) => copiesOf(s).filter((c) => c.from === undefined));
    expect(local.length).toBeGreaterThan(0);
    for (const c of local) {
      for (const src of c.sources) {
        const top = src.replace(/\/$/, '').split('/')[0] ?? '';
        expect({ src, line: c.line, exists: await exists(join(REPO_ROOT, src)) }).toEqual({
          src,
          line: c.line,
          exists: true,
        });
        expect({ src, ignored: dockerignore.includes(top) }).toEqual({ src, ignored: false });
      }
    }
  });

  it('builds the entrypoint from exactly what the build stage copies', async () => {
    buildDir = await mkdtemp(join(tmpdir(), 'pt-docker-build-'));
    temps.push(buildDir);
    for (const c of copiesOf(build)) {
      for (const src of c.sources) {
        const to =
          c.dest.endsWith('/') && !src.endsWith('/') ? join(buildDir, c.dest, src) : join(buildDir, src);
        await mkdir(dirname(to), { recursive: true });
        await cp(join(REPO_ROOT, src), to, { recursive: true });
      }
    }
    // `RUN npm ci` of the build stage: the repository's own install stands in for it.
    expect(build.instructions.some((i) => i.op === 'RUN' && /^npm ci\b/.test(i.args))).toBe(true);
    await symlink(join(REPO_ROOT, 'node_modules'), join(buildDir, 'node_modules'));
    const buildRun = build.instructions.filter((i) => i.op === 'RUN').at(-1)?.args;
    expect(buildRun).toBe('npm run build');
    await run('npm', ['run', 'build'], {
      cwd: buildDir,
      env: { ...process.env, PATH: `${join(REPO_ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` },
    });
    expect(await exists(join(buildDir, BUNDLE_PATH))).toBe(true);
    // The flags of sidecar/node/flags.ts, on the line the image's entrypoint runs.
    const firstLine = (await readFile(join(buildDir, BUNDLE_PATH), 'utf8')).split('\n')[0];
    expect(firstLine).toBe(`#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}`);
    expect((await stat(join(buildDir, BUNDLE_PATH))).mode & 0o111).toBe(0o111);
    // The image's user (not the builder) must read every file of it, the compile cache's too.
    const bundleDir = dirname(join(buildDir, BUNDLE_PATH));
    const files = await readdir(bundleDir, { recursive: true, withFileTypes: true });
    expect(files.some((f) => f.parentPath.includes('.compile-cache') && f.isFile())).toBe(true);
    // ...under the name Node looks for when it runs as the image's user.
    const cacheDirs = await readdir(join(bundleDir, '.compile-cache'));
    expect(cacheDirs.some((d) => d.endsWith(`-${IMAGE_UID}`))).toBe(true);
    for (const f of files) {
      const mode = (await stat(join(f.parentPath, f.name))).mode;
      expect({ file: f.name, readable: (mode & 0o004) !== 0 }).toEqual({ file: f.name, readable: true });
    }
  }, 180_000);

  it('starts the CLI from the bundle alone', async () => {
    expect(buildDir).not.toBe('');
    appDir = await mkdtemp(join(tmpdir(), 'pt-docker-app-'));
    temps.push(appDir);
    const workdir = runtime.workdir;
    // Nothing is installed in the runtime stage: no npm ci, no package.json, no node_modules of its own.
    expect(runtime.instructions.filter((i) => i.op === 'RUN').map((i) => i.args)).toEqual([]);
    const copies = copiesOf(runtime);
    expect(copies.map((c) => ({ from: c.from, sources: c.sources }))).toEqual([
      { from: 'build', sources: [`${build.workdir}/${dirname(BUNDLE_PATH)}/`] },
    ]);
    for (const c of copies) {
      for (const src of c.sources) {
        const origin = join(buildDir, src.replace(new RegExp(`^${build.workdir}/?`), ''));
        const dest = c.dest.replace(new RegExp(`^${workdir}/?`), '');
        const to = src.endsWith('/') || !dest.endsWith('/') ? join(appDir, dest) : join(appDir, dest, src);
        expect({ src, exists: await exists(origin) }).toEqual({ src, exists: true });
        await mkdir(dirname(to), { recursive: true });
        await cp(origin, to, { recursive: true });
      }
    }
    expect(await readdir(appDir)).toEqual(['dist']);
    expect(await readdir(join(appDir, 'dist'))).toEqual(['bundle']);
    // Beside the bundle, only what it keeps external: sodium-native and the loader it finds its
    // binary with; of its prebuilds only this platform's Node binary (not Bare's, no other arch).
    const modules = join(appDir, dirname(BUNDLE_PATH), 'node_modules');
    const packages = (await readdir(modules)).sort();
    expect(packages).toContain('sodium-native');
    expect(packages).toContain('require-addon');
    expect(packages.filter((p) => p.startsWith('@'))).toEqual([]);
    expect(packages.length).toBeLessThanOrEqual(8);
    const files = await readdir(modules, { recursive: true, withFileTypes: true });
    const prebuilds = files
      .filter((f) => f.isFile() && f.parentPath.includes('/prebuilds/'))
      .map((f) => relative(modules, join(f.parentPath, f.name)));
    expect(prebuilds).toEqual([
      `sodium-native/prebuilds/${process.platform}-${process.arch}/sodium-native.node`,
    ]);
    // The app layer: measured 11.0 MB (chunks 7.8, their compile cache 1.9, sodium-native and its
    // loader 1.3).
    let bytes = 0;
    for (const f of await readdir(appDir, { recursive: true, withFileTypes: true }))
      if (f.isFile()) bytes += (await stat(join(f.parentPath, f.name))).size;
    expect(bytes).toBeLessThan(14_000_000);

    const entry = JSON.parse(
      runtime.instructions.find((i) => i.op === 'ENTRYPOINT')?.args ?? '[]',
    ) as string[];
    const [program = '', ...entryArgs] = entry;
    // The entrypoint executed as the image does (its `env node` finds Node 24 first on PATH).
    const cli = (...args: string[]) =>
      run(join(appDir, program.replace(new RegExp(`^${workdir}/?`), '')), [...entryArgs, ...args], {
        cwd: appDir,
        env: {
          PATH: `${dirname(NODE24)}:${process.env.PATH ?? ''}`,
          HOME: '/tmp',
          NODE_ENV: 'production',
        },
      });
    const help = await cli('--help');
    expect(help.stdout).toMatch(/^usage: peertunnel/);
    const key = await cli('keygen');
    expect(key.stdout).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n?$/);
    expect((await cli('cid', 'web')).stdout.trim()).toMatch(/^b[a-z2-7]+$/);
    expect((await cli('operator', '--help')).stdout).toMatch(/operator/);
    // A relay and two nodes carrying traffic: libp2p and its services load from production deps.
    const demo = await cli('demo', '--duration', '1');
    expect(demo.stdout).toMatch(/peertunnel_stream_bytes_total\{service="demo-web"/);
  }, 180_000);
});
