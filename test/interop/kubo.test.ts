/**
 * Interop with a real peer no one here wrote: kubo joins a PeerTunnel private network (same swarm
 * key, the network's DHT protocol set to kubo's /ipfs/kad/1.0.0) and the tunnel works both ways:
 *
 * 1. kubo finds an exposed service's provider through the DHT (`ipfs routing findprovs` on the key
 *    `peertunnel cid` prints) and reaches it with `ipfs p2p forward`;
 * 2. kubo offers a service with `ipfs p2p listen` and announces it under the same kind of key
 *    (`ipfs block put` of "peertunnel:service:<name>" is exactly that CID; then
 *    `ipfs routing provide`); a sidecar that only knows the relay finds it and forwards to it;
 * 3. a kubo node without the key cannot connect.
 *
 * Our nodes run a credentialed network in interop mode: kubo cannot present a credential, so
 * the names it serves and reaches are listed in `trust.uncredentialed`; any other name stays
 * closed to it.
 *
 * Data checks use echo with a known length, not half-close: kubo's `ipfs p2p` closes both
 * directions as soon as one side reaches EOF (kubo p2p/stream.go), so "send, FIN, read the answer"
 * is not something a kubo end carries.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { makeCluster } from '../helpers/credentials.js';
import {
  CLI,
  eventually,
  type NodeProcess,
  startNodeProcess,
  testSwarmKey,
} from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';
import { connectTo, echoServer, type TestServer } from '../helpers/traffic.js';
import { describeWithKubo, ensureKubo, KUBO_BUILD_TIMEOUT_MS, type KuboNode, startKubo } from './kubo.js';

const run = promisify(execFile);
const KUBO_DHT = '/ipfs/kad/1.0.0';
const KEY_ENV = 'PEERTUNNEL_TEST_KEY';
const swarmKey = testSwarmKey();
const env = { [KEY_ENV]: swarmKey };
const base = {
  swarmKey: { env: KEY_ENV },
  listen: ['/ip4/127.0.0.1/tcp/0'],
  dht: { protocol: KUBO_DHT, server: 'auto' as const },
  log: { level: 'info' as const },
  trust: {
    network: 'mesh',
    clusters: [{ name: 'a', publicKey: makeCluster('a').publicKey }],
    uncredentialed: ['to-ours', 'to-kubo'],
  },
};

/** Sends `size` random bytes, reads the same number back, then closes; true when identical. */
async function echoExact(port: number, size: number): Promise<boolean> {
  const data = randomBytes(size);
  const s = await connectTo(port);
  const parts: Buffer[] = [];
  let n = 0;
  const back = new Promise<Buffer>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= size) resolve(Buffer.concat(parts));
    });
    s.once('error', reject);
    s.once('close', () => reject(new Error(`closed after ${n} of ${size} bytes`)));
  });
  s.write(data);
  try {
    return (await back).equals(data);
  } finally {
    s.destroy();
  }
}

async function cidOf(name: string): Promise<string> {
  const { stdout } = await run(process.execPath, [CLI, 'cid', name]);
  return stdout.trim();
}

describeWithKubo('kubo in a PeerTunnel network', () => {
  let bin: string;
  let relay: NodeProcess;
  let exposer: NodeProcess;
  let kubo: KuboNode;
  const others: { stop(): Promise<unknown> }[] = [];
  const servers: TestServer[] = [];

  beforeAll(async () => {
    bin = await ensureKubo();
    relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const echo = await echoServer();
    servers.push(echo);
    exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        expose: [
          { name: 'to-ours', port: echo.port },
          { name: 'private', port: echo.port },
        ],
      },
      { env },
    );
    kubo = await startKubo({
      bin,
      swarmKey,
      bootstrap: relay.addresses,
      logLevel: process.env.PEERTUNNEL_KUBO_LOG ?? 'error',
    });
  }, KUBO_BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await Promise.allSettled(others.map((o) => o.stop()));
    await Promise.allSettled([kubo?.stop(), exposer?.stop(), relay?.stop()]);
    await Promise.allSettled(servers.map((s) => s.close()));
  });

  const explain = (what: string) => `${what}\n--- kubo ---\n${kubo.output().slice(-3000)}`;

  it('kubo is connected to our relay through the private network', async () => {
    // kubo's own word that it runs as a private network member (it prints this only with a key).
    expect(kubo.output()).toContain('Swarm is limited to private network of peers with the swarm key');
    await eventually(
      async () => ((await kubo.ipfs(['swarm', 'peers'])).includes(relay.peerId) ? true : undefined),
      20_000,
      'kubo connected to the relay',
    ).catch((err: unknown) => {
      throw new Error(explain(String(err)));
    });
  });

  it('kubo finds our exposer in the DHT and reaches the service with ipfs p2p forward', async () => {
    const cid = await cidOf('to-ours');
    const providers = await eventually(
      async () => {
        const out = await kubo.ipfs(['routing', 'findprovs', '--num-providers=1', cid], 20_000);
        return out.includes(exposer.peerId) ? out : undefined;
      },
      60_000,
      'the exposer as a provider, found by kubo',
    ).catch((err: unknown) => {
      throw new Error(explain(String(err)));
    });
    expect(providers.trim().split('\n')).toContain(exposer.peerId);

    const port = await freePort();
    await kubo.ipfs([
      'p2p',
      'forward',
      '/x/peertunnel/to-ours/1.0.0',
      `/ip4/127.0.0.1/tcp/${port}`,
      `/p2p/${exposer.peerId}`,
    ]);
    expect(await echoExact(port, 64 * 1024)).toBe(true);
    // Past yamux's initial 256 KiB window both ways, and several connections at once.
    expect(await echoExact(port, 4 * 1024 * 1024)).toBe(true);
    const many = await Promise.all(Array.from({ length: 8 }, () => echoExact(port, 256 * 1024)));
    expect(many.every((ok) => ok)).toBe(true);
    expect(
      await exposer.metric('peertunnel_streams_opened_total', { service: 'to-ours', side: 'expose' }),
    ).toBeGreaterThanOrEqual(10);
  }, 120_000);

  it('kubo, with no credential, cannot reach a name not open to uncredentialed peers', async () => {
    const port = await freePort();
    await kubo.ipfs([
      'p2p',
      'forward',
      '/x/peertunnel/private/1.0.0',
      `/ip4/127.0.0.1/tcp/${port}`,
      `/p2p/${exposer.peerId}`,
    ]);
    // kubo may hold its local end open after the stream was refused: nothing comes back.
    const s = await connectTo(port);
    let back = 0;
    s.on('data', (d: Buffer) => {
      back += d.length;
    });
    s.on('error', () => undefined);
    s.write(randomBytes(1024));
    await eventually(
      async () =>
        (await exposer.metric('peertunnel_trust_refused_total', {
          side: 'expose',
          reason: 'no_credential',
        })) >= 1
          ? true
          : undefined,
      20_000,
      'the refusal counted',
    );
    s.destroy();
    expect(back).toBe(0);
    expect(await exposer.metric('peertunnel_streams_opened_total', { service: 'private' })).toBe(0);
  }, 60_000);

  it('a sidecar finds a service kubo offers with ipfs p2p listen, and forwards to it', async () => {
    const echo = await echoServer();
    servers.push(echo);
    await kubo.ipfs(['p2p', 'listen', '/x/peertunnel/to-kubo/1.0.0', `/ip4/127.0.0.1/tcp/${echo.port}`]);
    const cid = await cidOf('to-kubo');
    const put = (
      await run(
        'sh',
        [
          '-c',
          `printf %s 'peertunnel:service:to-kubo' | "$0" block put --cid-codec=raw --mhtype=sha2-256`,
          bin,
        ],
        { env: { ...process.env, IPFS_PATH: kubo.ipfsPath } },
      )
    ).stdout.trim();
    expect(put).toBe(cid);
    await eventually(
      async () => {
        await kubo.ipfs(['routing', 'provide', cid], 20_000);
        return true;
      },
      60_000,
      'kubo providing the key',
    ).catch((err: unknown) => {
      throw new Error(explain(String(err)));
    });

    const localPort = await freePort();
    const forwarder = await startNodeProcess(
      { ...base, bootstrap: relay.addresses, forward: [{ name: 'to-kubo', localPort }] },
      { env },
    );
    others.push(forwarder);
    await eventually(
      async () => {
        const f = (await forwarder.status()).forwards[0];
        return f?.providers.some((p) => p.peer === kubo.peerId) ? true : undefined;
      },
      60_000,
      'kubo as a provider of to-kubo, found by the sidecar',
    ).catch((err: unknown) => {
      throw new Error(explain(String(err)));
    });
    expect(await echoExact(localPort, 64 * 1024)).toBe(true);
    expect(await echoExact(localPort, 4 * 1024 * 1024)).toBe(true);
    const many = await Promise.all(Array.from({ length: 8 }, () => echoExact(localPort, 256 * 1024)));
    expect(many.every((ok) => ok)).toBe(true);
  }, 180_000);

  it('a kubo node without the swarm key cannot connect', async () => {
    const outsider = await startKubo({ bin, bootstrap: [] });
    others.push(outsider);
    const target = relay.addresses[0] ?? '';
    await expect(outsider.ipfs(['swarm', 'connect', target], 20_000)).rejects.toThrow();
    expect(await outsider.ipfs(['swarm', 'peers'])).not.toContain(relay.peerId);
    const peers = (await relay.status()).peers.map((p) => p.peer);
    expect(peers).not.toContain(outsider.peerId);
  }, 60_000);
});
