import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { formatClusterPublicKey } from '../../../../contracts/cluster-key.js';
import type { TrustedCluster } from '../../../../contracts/trust-sync.js';
import { createSidecarMetrics } from '../../../../sidecar/admin/metrics.js';
import { trustSchema } from '../../../../sidecar/config/trust-config.js';
import { IssuerError } from '../../../../sidecar/trust/issuer-http.js';
import { TrustStore } from '../../../../sidecar/trust/trust-store.js';
import { TrustSync, trustUrl } from '../../../../sidecar/trust/trust-sync.js';

const key = () => formatClusterPublicKey(generateKeyPairSync('ed25519').privateKey);
const A = { name: 'a', publicKey: key() };
const B = { name: 'b', publicKey: key() };
const ISSUER = { url: 'https://op.ns.svc:443/credential', tokenFile: '/t', trustPollSeconds: 5 };

async function setup(post: (url: string, body: string) => Promise<string>, credential = 'ptcred1.c.s') {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const metrics = createSidecarMetrics(new Registry());
  const store = await TrustStore.load(trustSchema.parse({ network: 'mesh', clusters: [A, B] }), logger);
  const privateKey = await generateKeyPair('Ed25519');
  const sync = new TrustSync({
    issuer: ISSUER,
    network: 'mesh',
    privateKey,
    peer: peerIdFromPrivateKey(privateKey).toString(),
    credential: () => credential || undefined,
    apply: (c: TrustedCluster[]) => void store.applyIssued(c),
    metrics,
    logger,
    post,
  });
  const failures = async (reason: string) =>
    (await metrics.trustSyncFailures.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
  return { sync, store, lines, failures };
}

const answer = (clusters: TrustedCluster[], network = 'mesh') => JSON.stringify({ v: 1, network, clusters });

describe('TrustSync', () => {
  it('asks beside the issuer with the credential and takes the answer in place of the inline clusters', async () => {
    const asked: Array<{ url: string; body: Record<string, unknown> }> = [];
    const { sync, store, lines } = await setup(async (url, body) => {
      asked.push({ url, body: JSON.parse(body) });
      return answer([A]);
    });
    const before = store.generation;
    expect(store.trustedClusters).toEqual(['a', 'b']);
    await sync.syncNow();
    expect(asked[0]?.url).toBe('https://op.ns.svc/credential/trust');
    expect(asked[0]?.body).toMatchObject({ v: 1, credential: 'ptcred1.c.s' });
    expect(store.trustedClusters).toEqual(['a']);
    expect(store.keysOf('b')).toEqual([]);
    expect(store.generation).toBe(before + 1);
    expect(lines.find((l) => l.event === 'trust_reloaded')).toMatchObject({
      source: 'issuer',
      clusters: ['a'],
    });
    // The same list again changes nothing: no new generation, no line.
    await sync.syncNow();
    expect(store.generation).toBe(before + 1);
    expect(lines.filter((l) => l.event === 'trust_reloaded')).toHaveLength(1);
  });

  it('keeps the last list when the operator is unreachable, refuses, or answers badly; logs each problem once', async () => {
    let next: () => Promise<string> = async () => answer([A]);
    const { sync, store, lines, failures } = await setup(() => next());
    await sync.syncNow();
    const generation = store.generation;
    const cases: Array<[string, () => Promise<string>]> = [
      ['unreachable', async () => Promise.reject(new Error('connect ECONNREFUSED'))],
      ['refused', async () => Promise.reject(new IssuerError('bad_credential', 'expired'))],
      ['bad_answer', async () => answer([])],
      ['bad_answer', async () => answer([B], 'other')],
      ['bad_answer', async () => '{"v":1,"network":"mesh","clusters":[{"name":"b"}]}'],
    ];
    for (const [reason, post] of cases) {
      next = post;
      await sync.syncNow();
      await sync.syncNow();
      expect(store.trustedClusters).toEqual(['a']);
      expect(store.generation).toBe(generation);
      expect(lines.filter((l) => l.event === 'trust_sync_failed').at(-1)).toMatchObject({ reason });
    }
    expect(await failures('unreachable')).toBe(2);
    expect(await failures('refused')).toBe(2);
    expect(await failures('bad_answer')).toBe(6);
    expect(lines.filter((l) => l.event === 'trust_sync_failed')).toHaveLength(5);
    expect(
      lines.find((l) => l.reason === 'bad_answer' && String(l.problem).includes('network')),
    ).toBeDefined();
    next = async () => answer([A, B]);
    await sync.syncNow();
    expect(store.trustedClusters).toEqual(['a', 'b']);
    expect(lines.at(-1)).toMatchObject({ event: 'trust_sync_recovered', clusters: ['a', 'b'] });
  });

  it('does not ask before the node holds a credential', async () => {
    let asked = 0;
    const { sync } = await setup(async () => {
      asked++;
      return answer([A]);
    }, '');
    await sync.syncNow();
    expect(asked).toBe(0);
  });

  it('waits the interval give or take a fifth', async () => {
    const at = async (r: number) => {
      const { sync } = await setup(async () => answer([A]));
      (sync as unknown as { init: { random: () => number } }).init.random = () => r;
      return sync.nextDelayMs();
    };
    expect(await at(0)).toBe(4_000);
    expect(await at(0.5)).toBe(5_000);
    expect(await at(1)).toBe(6_000);
  });

  it('finds the trust endpoint beside any issuer URL', () => {
    expect(trustUrl('https://127.0.0.1:8443/credential')).toBe('https://127.0.0.1:8443/credential/trust');
  });
});
