import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { generateClusterKey } from '../../../../contracts/cluster-key.js';
import { parseConfig } from '../../../../sidecar/config/config.js';
import { loadTrustFile } from '../../../../sidecar/config/trust-config.js';

const key = { swarmKey: { file: '/etc/peertunnel/swarm.key' } };
const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';
const { publicKey } = generateClusterKey();

function errorOf(fn: () => unknown): { name: string; field: string; message: string } {
  try {
    fn();
  } catch (err) {
    return err as { name: string; field: string; message: string };
  }
  throw new Error('expected an error');
}

describe('trust config', () => {
  const dir = mkdtemp(join(tmpdir(), 'pt-trust-'));
  afterAll(async () => rm(await dir, { recursive: true, force: true }));

  it('is absent by default: an open network', () => {
    expect(parseConfig(key).trust).toBeUndefined();
  });

  it('applies defaults and fills allowFrom fields with "*"', () => {
    const cfg = parseConfig({
      ...key,
      trust: { network: 'shop/mesh', clusters: [{ name: 'a', publicKey }] },
      expose: [{ name: 'redis', port: 6379, allowFrom: [{ cluster: 'a', namespace: 'shop' }] }],
    });
    expect(cfg.trust).toEqual({
      network: 'shop/mesh',
      clusters: [{ name: 'a', publicKey }],
      allowPeers: [],
      uncredentialed: [],
    });
    expect(cfg.expose[0]?.allowFrom).toEqual([{ cluster: 'a', namespace: 'shop', serviceAccount: '*' }]);
  });

  it.each([
    [
      { network: 'mesh', clusters: [{ name: 'a', publicKey: 'ed25519:short' }] },
      'trust.clusters[0].publicKey',
    ],
    [{ network: 'mesh', clusters: [{ name: 'A!', publicKey }] }, 'trust.clusters[0].name'],
    [{ network: 'mesh', allowPeers: ['not-a-peer'] }, 'trust.allowPeers[0]'],
    [{ network: 'mesh', uncredentialed: ['Bad_Name'] }, 'trust.uncredentialed[0]'],
    [{ clusters: [] }, 'trust.network'],
    [{ network: 'mesh', credential: { file: '' } }, 'trust.credential.file'],
    [{ network: 'mesh', extra: 1 }, 'trust.extra'],
  ])('refuses a bad trust section in one line naming the field (%#)', (trust, field) => {
    const err = errorOf(() => parseConfig({ ...key, trust }));
    expect(err.name).toBe('ConfigError');
    expect(err.field).toBe(field);
    expect(err.message).not.toContain('\n');
  });

  it('refuses allowFrom without a trust section, and on a name open to uncredentialed peers', () => {
    const expose = [{ name: 'redis', port: 6379, allowFrom: [{ namespace: 'shop' }] }];
    expect(errorOf(() => parseConfig({ ...key, expose })).message).toBe(
      'invalid config: expose[0].allowFrom: allowFrom needs a trust section (without one every member may reach every expose)',
    );
    const trust = { network: 'mesh', uncredentialed: ['redis'] };
    expect(errorOf(() => parseConfig({ ...key, trust, expose })).field).toBe('expose[0].allowFrom');
    const bad = [{ name: 'redis', port: 6379, allowFrom: [{ namespace: 'Shop' }] }];
    expect(errorOf(() => parseConfig({ ...key, trust: { network: 'mesh' }, expose: bad })).field).toBe(
      'expose[0].allowFrom[0].namespace',
    );
  });

  it('reads a trust file, and refuses a bad one naming the file and the field', async () => {
    const file = join(await dir, 'trust.yaml');
    await writeFile(file, `clusters:\n  - { name: a, publicKey: "${publicKey}" }\nallowPeers: [${PEER}]\n`);
    expect(await loadTrustFile(file)).toMatchObject({
      clusters: [{ name: 'a', publicKey }],
      allowPeers: [PEER],
    });
    await writeFile(file, 'clusters:\n  - { name: a, publicKey: nope }\n');
    await expect(loadTrustFile(file)).rejects.toThrow(
      `invalid config: trust.file ${file}: clusters[0].publicKey: expected ed25519:<43 base64url characters>`,
    );
    await expect(loadTrustFile(join(await dir, 'missing'))).rejects.toThrow(
      /cannot read .*missing \(ENOENT\)/,
    );
  });
});
