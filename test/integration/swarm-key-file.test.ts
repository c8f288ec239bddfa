/**
 * The swarm key of an injected sidecar never enters a process environment: the pod the operator
 * renders is run as a kubelet would (its env vars resolved, its Secret volume written to a
 * directory standing in for the mount), and the running node's /proc/<pid>/environ holds neither
 * the key nor a variable for it, while the node starts on the key it read from the file.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import { renderSidecar } from '../../operator/inject/render.js';
import { injectSettings } from '../../operator/inject/settings.js';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import { type NodeProcess, startNodeProcess, testSwarmKey } from '../helpers/node-process.js';

const BOOT = '/ip4/127.0.0.1/tcp/9/p2p/12D3KooWGzBkkmGXdkaBLMW4S37Cr8nqHU5DfZBG4AShdXjd1Cxn';

describe('swarm key of an injected sidecar', () => {
  let dir: string;
  let node: NodeProcess | undefined;
  const key = testSwarmKey();
  const hex = key.trim().split('\n')[2] ?? '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-swarm-key-'));
  });
  afterAll(async () => {
    await node?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('is read from the mounted file and is in no environment of the node process', async () => {
    const network: PeerNetwork = {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind: 'PeerNetwork',
      metadata: { name: 'mesh', namespace: 'shop' },
      spec: { swarmKeySecretRef: { name: 'mesh-key', key: 'swarm.key' }, bootstrap: [BOOT] },
    };
    const tunnel: PeerTunnel = {
      apiVersion: 'peertunnel.io/v1alpha1',
      kind: 'PeerTunnel',
      metadata: { name: 'db', namespace: 'shop' },
      spec: {
        networkRef: { name: 'mesh' },
        selector: { matchLabels: { app: 'db' } },
        expose: [{ name: 'db', port: 5432 }],
      },
    };
    const r = renderSidecar({
      tunnels: [tunnel],
      network,
      settings: injectSettings({ operatorNamespace: 'peertunnel-system', image: 'example/peertunnel:1' }),
    });
    if (r.kind !== 'rendered') throw new Error(`not rendered: ${r.message}`);
    const secret: Record<string, string> = { 'swarm.key': key };

    // The kubelet's part: env vars (a secretKeyRef resolved from the Secret) and the volume's files.
    const env: Record<string, string> = {};
    for (const e of r.container.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      env[e.name] = ref !== undefined ? (secret[ref.key] ?? '') : (e.value ?? '');
    }
    const mount = r.container.volumeMounts?.find((m) => m.name === r.volume.name);
    expect(mount?.readOnly).toBe(true);
    for (const item of r.volume.secret?.items ?? [])
      await writeFile(join(dir, item.path), secret[item.key] ?? '');

    // The rendered config, with the mount path mapped to the directory and local-only addresses.
    const config = JSON.parse(env.PEERTUNNEL_CONFIG ?? '{}') as NodeConfigInput;
    delete env.PEERTUNNEL_CONFIG;
    const file = config.swarmKey.file ?? '';
    expect(file.startsWith(`${mount?.mountPath}/`)).toBe(true);
    config.swarmKey = { file: join(dir, file.slice((mount?.mountPath ?? '').length + 1)) };
    config.listen = ['/ip4/127.0.0.1/tcp/0'];
    config.admin = { listen: '127.0.0.1:0' };

    node = await startNodeProcess(config, { env });
    const pid = node.proc.pid ?? 0;
    const environ = await readFile(`/proc/${pid}/environ`, 'utf8');
    expect(environ.includes(hex)).toBe(false);
    expect(environ.split('\0').filter((v) => /SWARM/i.test(v.split('=')[0] ?? ''))).toEqual([]);
    expect((await node.status()).peerId).toBe(node.peerId);
  });
});
