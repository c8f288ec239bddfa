/**
 * The standalone credential commands as a user runs them (the README's example): a cluster key,
 * a node identity, a credential issued for it, inspected, and a node that starts with it; bad
 * input stops each command with one line, never a stack.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CLI, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

describe('peertunnel cluster-key and credential', () => {
  let dir: string;
  let publicLine = '';
  let peer = '';
  const f = (name: string) => join(dir, name);
  const issueArgs = () => [
    'credential',
    'issue',
    '--cluster-key',
    f('cluster-a.key'),
    '--network',
    'mesh',
    '--cluster',
    'a',
    '--namespace',
    'shop',
    '--service-account',
    'redis',
    '--peer',
    peer,
    '--expose',
    'redis',
    '--ttl',
    '1h',
  ];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-cred-cli-'));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  it('writes a cluster key readable only by its owner and prints the line for trusted lists', async () => {
    const r = await cli(['cluster-key', '--out', f('cluster-a.key'), '--name', 'a']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\{ name: a, publicKey: "ed25519:[A-Za-z0-9_-]{43}" \}\n$/);
    publicLine = /ed25519:[A-Za-z0-9_-]{43}/.exec(r.stdout)?.[0] ?? '';
    expect((await stat(f('cluster-a.key'))).mode & 0o777).toBe(0o600);
    expect(await readFile(f('cluster-a.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    // Never over an existing key.
    expect((await cli(['cluster-key', '--out', f('cluster-a.key')])).code).not.toBe(0);
  });

  it('issues a credential for a node identity and inspects it', async () => {
    peer = (await cli(['identity', '--out', f('node.key')])).stdout.trim();
    const r = await cli([...issueArgs(), '--out', f('node.cred')]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const shown = await cli(['credential', 'inspect', f('node.cred'), '--public-key', publicLine]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`peer:            ${peer}`);
    expect(shown.stdout).toContain('namespace:       shop');
    expect(shown.stdout).toContain('expose:          redis');
    expect(shown.stdout).toContain('now:             valid');
    expect(shown.stdout).toContain('signature:       good');
    const other = (await cli(['cluster-key', '--out', f('cluster-b.key')])).stdout.trim();
    expect((await cli(['credential', 'inspect', f('node.cred'), '--public-key', other])).stdout).toContain(
      'signature:       BAD',
    );
  });

  it.each([
    [['--ttl', '0s'], /--ttl: expected 1s to 30d/],
    [['--ttl', '31d'], /--ttl: expected 1s to 30d/],
    [['--peer', 'nobody'], /--peer: expected a libp2p peer ID/],
    [['--namespace', 'Shop'], /namespace: expected a name/],
    [['--expose', 'Bad_Name'], /expose\[1\]: expected a service name/],
    [['--cluster-key', '/nonexistent'], /cannot read \/nonexistent \(ENOENT\)/],
  ])('refuses bad input in one line (%#)', async (extra, message) => {
    const r = await cli([...issueArgs(), ...extra]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('refuses a garbage credential file in one line', async () => {
    await writeFile(f('junk.cred'), 'ptcred1.junk');
    const r = await cli(['credential', 'inspect', f('junk.cred')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('peertunnel: invalid credential: expected ptcred1.<claims>.<signature>\n');
  });

  it('runs a node with the credential, and refuses to start with one for another peer', async () => {
    const env = { PT_KEY: testSwarmKey() };
    const trust = {
      network: 'mesh',
      credential: { file: f('node.cred') },
      clusters: [{ name: 'a', publicKey: publicLine }],
    };
    const config = { swarmKey: { env: 'PT_KEY' }, listen: ['/ip4/127.0.0.1/tcp/0'], trust };
    const node = await startNodeProcess({ ...config, identity: { file: f('node.key') } }, { env });
    try {
      expect(node.peerId).toBe(peer);
      expect(node.logs.find((l) => l.event === 'credential_loaded')).toMatchObject({
        cluster: 'a',
        expose: ['redis'],
      });
      expect((await node.status()).trust).toMatchObject({ mode: 'credentialed', trustedClusters: ['a'] });
    } finally {
      await node.stop();
    }
    await cli(['identity', '--out', f('other.key')]);
    await expect(
      startNodeProcess({ ...config, identity: { file: f('other.key') } }, { env }),
    ).rejects.toThrow(
      /invalid config: trust\.credential\.file: .* the credential is for peer 12D3KooW\w+, this node is 12D3KooW\w+$/,
    );
  });
});
