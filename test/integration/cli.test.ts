/** The CLI as a user runs it: bad configs stop it with one line naming the field; keygen; demo. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CLI, REPO_ROOT } from '../helpers/node-process.js';
import { loadConfigCorpus } from '../unit/sidecar/config/config-corpus.js';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, ...env }, timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('peertunnel CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const key = { swarmKey: { env: 'PT_KEY' } };
  it.each([
    ['missing swarm key', { expose: [{ name: 'db', port: 5432 }] }, 'swarmKey'],
    ['port 0', { ...key, expose: [{ name: 'db', port: 0 }] }, 'expose[0].port'],
    ['port 70000', { ...key, forward: [{ name: 'db', localPort: 70000 }] }, 'forward[0].localPort'],
    [
      'duplicate names',
      {
        ...key,
        expose: [
          { name: 'db', port: 1 },
          { name: 'db', port: 2 },
        ],
      },
      'expose[1].name',
    ],
    [
      'an unknown field',
      { ...key, forward: [{ name: 'db', localPort: 5432, bnd: '0.0.0.0' }] },
      'forward[0].bnd',
    ],
  ])('stops on %s with one line naming the field', async (_what, config, field) => {
    const file = join(dir, `${field.replace(/\W/g, '_')}.json`);
    await writeFile(file, JSON.stringify(config));
    const r = await cli(['node', '--config', file]);
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(field);
  });

  // A sample of the malformed-config corpus as real processes (the unit test runs all of it
  // through the schema): before the checks, bad peer IDs and addresses got past the config and
  // the node died on them with a stack trace.
  const sample = new Set([
    'bootstrap-peer-id-garbage',
    'bootstrap-peer-id-one-short',
    'bootstrap-bad-ipv4',
    'bootstrap-port-70000',
    'announce-without-transport',
    'listen-without-transport',
    'dht-protocol-8-mib',
    'expose-host-cloud-metadata',
    'expose-port-a-string',
    'forward-duplicate-names',
    'top-level-a-list',
  ]);
  const corpus = loadConfigCorpus().filter((e) => sample.has(e.name));
  it('samples every corpus entry it names', () => expect(corpus.length).toBe(sample.size));
  it.each(corpus.map((e) => [e.name, e] as const))(
    'corpus %s: exit 2, one line naming the field, no stack trace',
    async (name, e) => {
      const file = join(dir, `corpus-${name}.json`);
      await writeFile(file, JSON.stringify(e.config));
      const r = await cli(['node', '--config', file]);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(`: ${e.field}: `);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    },
  );

  it('stops with one line when the swarm key env var is empty', async () => {
    const file = join(dir, 'nokey.yaml');
    await writeFile(file, 'swarmKey: {env: PT_KEY_UNSET}\nexpose:\n  - {name: db, port: 5432}\n');
    const r = await cli(['node', '--config', file], { PT_KEY_UNSET: '' });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain('PT_KEY_UNSET');
  });

  it('stops with one line on a config file that does not exist', async () => {
    const r = await cli(['node', '--config', join(dir, 'absent.yaml')]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('keygen prints a swarm key in the kubo format, new each time', async () => {
    const a = await cli(['keygen']);
    const b = await cli(['keygen']);
    expect(a.code).toBe(0);
    expect(a.stdout).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/);
    expect(a.stdout).not.toBe(b.stdout);
  });

  it('cid prints the DHT key of a service name, stable across runs', async () => {
    const a = await cli(['cid', 'orders-db']);
    const b = await cli(['cid', 'orders-db']);
    expect(a.stdout.trim()).toMatch(/^bafk/);
    expect(a.stdout).toBe(b.stdout);
  });

  it('runs the demo command README opens with', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const first = /```sh\n(.*)\n/.exec(readme)?.[1] ?? '';
    expect(first).toMatch(/^npm install && npm run demo -- --duration \d+/);
    // The same npm script, with a shorter duration (npm install already ran for this suite).
    const r = await new Promise<Run>((resolve) => {
      execFile(
        'npm',
        ['run', '--silent', 'demo', '--', '--duration', '2'],
        { cwd: REPO_ROOT, timeout: 150_000 },
        (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
      );
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('sha256 matches');
    expect(r.stdout).toMatch(/first request through the tunnel: 200/);
    expect(r.stdout).toMatch(
      /peertunnel_stream_bytes_total\{service="demo-web",side="forward",direction="sent"\} \d{8,}/,
    );
  }, 180_000);
});
