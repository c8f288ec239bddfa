/**
 * Which provider a forward's new TCP connections go to, with a real ForwardListener (a TCP listener
 * on 127.0.0.1) and a stub of libp2p: connected providers answer on in-memory stream pairs, a dead
 * one's dial hangs until its timeout the way a dial to a deleted pod's address does. Asserts whom
 * each connection tried (the pool's counts), never how long it took.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import { generateKeyPair } from '@libp2p/crypto/keys';
import type { Connection, PeerId, Stream } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { streamPair } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { Registry } from 'prom-client';
import { createSidecarMetrics } from '../../../../sidecar/admin/metrics.js';
import type { DirectoryEvent } from '../../../../sidecar/discovery/service-directory.js';
import { PathRegistry } from '../../../../sidecar/node/connection-paths.js';
import { silentLogger } from '../../../../sidecar/node/logger.js';
import { ForwardListener, type ForwardListenerComponents } from '../../../../sidecar/tunnel/forward.js';
import { pipe } from '../../../../sidecar/tunnel/pipe.js';
import { ProviderPool } from '../../../../sidecar/tunnel/provider-pool.js';
import { connectTo, nameServer, readAll, type TestServer } from '../../../helpers/traffic.js';

const SERVICE = 'db';

/** A provider as the stub libp2p sees it: its name server, and whether a connection to it is open. */
interface FakeProvider {
  id: PeerId;
  server: TestServer;
  /** An open connection (dialled or not): streams reach the server. */
  connection?: Connection;
  /** How a dial to it ends: connect (after `delayMs`), or hang until the dial's signal aborts. */
  dial: { outcome: 'connect'; delayMs: number } | { outcome: 'hang' };
  dials: number;
}

async function provider(name: string, connected: boolean, dial: FakeProvider['dial']): Promise<FakeProvider> {
  const id = peerIdFromPrivateKey(await generateKeyPair('Ed25519'));
  const p: FakeProvider = { id, server: await nameServer(name), dial, dials: 0 };
  if (connected) p.connection = fakeConnection(p);
  return p;
}

/** An open direct connection whose every stream is piped to the provider's name server. */
function fakeConnection(p: FakeProvider): Connection {
  const connection = {
    status: 'open',
    limits: undefined,
    remoteAddr: multiaddr('/ip4/127.0.0.1/tcp/4001'),
    remotePeer: p.id,
    newStream: async (): Promise<Stream> => {
      const [local, remote] = await streamPair();
      void connectTo(p.server.port).then((socket) => pipe(socket, remote));
      return local;
    },
  };
  return connection as unknown as Connection;
}

function stubLibp2p(providers: FakeProvider[]): ForwardListenerComponents['libp2p'] {
  const byId = (peer: PeerId | undefined) => providers.find((p) => p.id.equals(peer));
  const libp2p = {
    getConnections: (peer?: PeerId) => {
      const c = byId(peer)?.connection;
      return c === undefined ? [] : [c];
    },
    dial: (peer: PeerId, options: { signal: AbortSignal }) => {
      const p = byId(peer);
      if (p === undefined) return Promise.reject(new Error('unknown peer'));
      p.dials++;
      const d = p.dial;
      return new Promise<Connection>((resolve, reject) => {
        const abort = () => reject(new DOMException('dial timed out', 'TimeoutError'));
        if (options.signal.aborted) return abort();
        options.signal.addEventListener('abort', abort, { once: true });
        if (d.outcome === 'connect')
          setTimeout(() => {
            options.signal.removeEventListener('abort', abort);
            p.connection = fakeConnection(p);
            resolve(p.connection);
          }, d.delayMs);
      });
    },
  };
  return libp2p as unknown as ForwardListenerComponents['libp2p'];
}

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface TestForward {
  port: number;
  pool: ProviderPool;
  /** Discovery found a provider: adds it to the pool and tells the forward, as ServiceDirectory does. */
  found(p: FakeProvider): void;
  /** How often the forward asked for a provider it had not tried. */
  lookups: { count: number };
}

/**
 * A forward whose libp2p can reach `providers`; its pool starts with `known` of them, and a fresh
 * lookup (`waitForNewProvider`) finds `lookupFinds`.
 */
async function forwarder(
  providers: FakeProvider[],
  known = providers,
  lookupFinds: FakeProvider[] = [],
): Promise<TestForward> {
  const pool = new ProviderPool();
  pool.seen(
    known.map((p) => p.id.toString()),
    Date.now(),
  );
  const listeners = new Set<(e: DirectoryEvent) => void>();
  const lookups = { count: 0 };
  const directory: ForwardListenerComponents['directory'] = {
    pool: (name) => (name === SERVICE ? pool : undefined),
    waitForProvider: async () => pool.size > 0,
    waitForNewProvider: async (_name, tried) => {
      lookups.count++;
      pool.seen(
        lookupFinds.map((p) => p.id.toString()),
        Date.now(),
      );
      return pool
        .list()
        .map((p) => p.peer)
        .filter((peer) => !tried.has(peer));
    },
    freshAddresses: async () => [],
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
  const listener = new ForwardListener(
    {
      libp2p: stubLibp2p(providers),
      directory,
      paths: new PathRegistry(),
      metrics: createSidecarMetrics(new Registry()),
      logger: silentLogger(),
    },
    { name: SERVICE, bind: '127.0.0.1', localPort: 0 },
    { dialTimeoutMs: 300 },
  );
  await listener.start();
  cleanups.push(() => listener.stop());
  for (const p of providers) cleanups.push(() => p.server.close());
  const found = (p: FakeProvider) => {
    if (pool.seen([p.id.toString()], Date.now()))
      for (const l of listeners) l({ type: 'providers_found', service: SERVICE });
  };
  return { port: listener.port ?? 0, pool, found, lookups };
}

/** Polls a condition every 10 ms, for at most 5 s (then the expectations after it fail). */
async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
}

const ask = async (port: number) => (await readAll(await connectTo(port))).toString().trim();
const stateOf = (pool: ProviderPool, p: FakeProvider) => pool.list().find((s) => s.peer === p.id.toString());

describe('forward: provider selection per new connection', () => {
  it('sends no connection to a provider without a connection while a connected one is left', async () => {
    // `gone` stopped and closed its connection; its address now swallows dials.
    const live = await provider('live', true, { outcome: 'connect', delayMs: 0 });
    const gone = await provider('gone', false, { outcome: 'hang' });
    const { port, pool } = await forwarder([live, gone]);
    const answers: string[] = [];
    for (let i = 0; i < 12; i++) answers.push(await ask(port));
    expect(answers).toEqual(Array(12).fill('live'));
    expect(stateOf(pool, gone)).toMatchObject({ attempts: 0, picks: 0 });
    expect(stateOf(pool, live)).toMatchObject({ attempts: 12, picks: 12 });
    // It was dialled in the background, and its failed dial put it in backoff.
    expect(gone.dials).toBeGreaterThanOrEqual(1);
    await until(() => (stateOf(pool, gone)?.failures ?? 0) >= 1);
    expect(stateOf(pool, gone)?.retryAt).toBeGreaterThan(0);
  });

  it('takes turns with a new provider once the background dial connected it', async () => {
    const old = await provider('old', true, { outcome: 'connect', delayMs: 0 });
    const fresh = await provider('fresh', false, { outcome: 'connect', delayMs: 20 });
    const { port, pool } = await forwarder([old, fresh]);
    expect(await ask(port)).toBe('old');
    await until(() => fresh.connection !== undefined);
    const answers: string[] = [];
    for (let i = 0; i < 10; i++) answers.push(await ask(port));
    expect(answers.filter((a) => a === 'fresh').length).toBe(5);
    expect(stateOf(pool, fresh)).toMatchObject({ failures: 0, picks: 5, attempts: 5 });
    expect(fresh.dials).toBe(1);
  });

  it('dials a provider discovery found before any connection asks for it', async () => {
    const old = await provider('old', true, { outcome: 'connect', delayMs: 0 });
    const fresh = await provider('fresh', false, { outcome: 'connect', delayMs: 0 });
    const { port, pool, found } = await forwarder([old, fresh], [old]);
    found(fresh);
    await until(() => fresh.connection !== undefined);
    expect(fresh.dials).toBe(1);
    const answers = [await ask(port), await ask(port)].sort();
    expect(answers).toEqual(['fresh', 'old']);
    expect(stateOf(pool, fresh)).toMatchObject({ attempts: 1, picks: 1 });
  });

  it('when every provider it knew failed, looks up one it did not know before giving the client up', async () => {
    // A rolling update: the forward knew only the replica that is restarting.
    const restarting = await provider('restarting', false, { outcome: 'hang' });
    const other = await provider('other', false, { outcome: 'connect', delayMs: 0 });
    const { port, pool, lookups } = await forwarder([restarting, other], [restarting], [other]);
    expect(await ask(port)).toBe('other');
    expect(lookups.count).toBe(1);
    expect(stateOf(pool, restarting)?.attempts).toBe(1);
    expect(stateOf(pool, restarting)?.failures).toBeGreaterThanOrEqual(1);
    expect(stateOf(pool, other)).toMatchObject({ attempts: 1, picks: 1 });
  });

  it('with no connected provider, uses whichever dial connects first', async () => {
    const dead = await provider('dead', false, { outcome: 'hang' });
    const slow = await provider('slow', false, { outcome: 'connect', delayMs: 50 });
    const { port, pool } = await forwarder([dead, slow]);
    expect(await ask(port)).toBe('slow');
    expect(await ask(port)).toBe('slow');
    expect(stateOf(pool, dead)).toMatchObject({ attempts: 0 });
    expect(stateOf(pool, slow)).toMatchObject({ attempts: 2, picks: 2 });
  });

  it('opens the stream again on the connection that replaced one closing under it (hole punch)', async () => {
    const only = await provider('only', true, { outcome: 'connect', delayMs: 0 });
    const direct = only.connection;
    // The relayed connection the forward picks: it closes as the stream opens, after the direct one
    // that replaces it is up (the order DCUtR leaves them in).
    only.connection = {
      ...(direct as Connection),
      newStream: async () => {
        only.connection = direct;
        throw new Error('Unexpected EOF');
      },
    } as unknown as Connection;
    const { port, pool } = await forwarder([only]);
    expect(await ask(port)).toBe('only');
    expect(stateOf(pool, only)).toMatchObject({ failures: 0, picks: 1 });
  });

  it('does not open it again when no other connection is there: the provider failed', async () => {
    const only = await provider('only', true, { outcome: 'hang' });
    const broken = {
      ...(only.connection as Connection),
      newStream: async () => {
        throw new Error('Unexpected EOF');
      },
    } as unknown as Connection;
    only.connection = broken;
    const { port, pool } = await forwarder([only]);
    // The client's connection is reset, as for any stream that cannot be opened.
    await expect(ask(port)).rejects.toThrow(/ECONNRESET/);
    expect(stateOf(pool, only)?.failures).toBeGreaterThanOrEqual(1);
  });

  it('still tries a provider in backoff when it is the only one left', async () => {
    const only = await provider('only', false, { outcome: 'connect', delayMs: 0 });
    const { port, pool } = await forwarder([only]);
    pool.failed(only.id.toString(), Date.now());
    expect(await ask(port)).toBe('only');
    expect(stateOf(pool, only)).toMatchObject({ failures: 0, picks: 1 });
  });
});
