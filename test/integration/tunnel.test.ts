/**
 * The data plane with real node processes on 127.0.0.1: a relay/bootstrap node, an exposer and a
 * forwarder, plus real TCP servers and clients in this process.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { writeIdentity } from '../../sidecar/cli/node.js';
import {
  eventually,
  type NodeProcess,
  REPO_ROOT,
  startNodeProcess,
  testSwarmKey,
} from '../helpers/node-process.js';
import { freePort } from '../helpers/ports.js';
import {
  answerFrom,
  connectTo,
  download,
  echoRoundTrip,
  echoServer,
  nameServer,
  readAll,
  rssOf,
  sinkServer,
  sourceServer,
  type TestServer,
  upload,
} from '../helpers/traffic.js';

const GiB = 1024 * 1024 * 1024;
const MiB = 1024 * 1024;
const KEY_ENV = 'PEERTUNNEL_TEST_KEY';
const env = { [KEY_ENV]: testSwarmKey() };
const base = {
  swarmKey: { env: KEY_ENV },
  listen: ['/ip4/127.0.0.1/tcp/0'],
  log: { level: 'info' as const },
};
const run = promisify(execFile);

describe('tunnel between node processes', () => {
  let relay: NodeProcess;
  let exposer: NodeProcess;
  let forwarder: NodeProcess;
  const servers: Record<string, TestServer> = {};
  const ports = { sink: 0, source: 0, echo: 0 };

  beforeAll(async () => {
    servers.sink = await sinkServer();
    servers.source = await sourceServer();
    servers.echo = await echoServer();
    relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        expose: [
          { name: 'sink', port: servers.sink.port },
          { name: 'source', port: servers.source.port },
          { name: 'echo', port: servers.echo.port },
        ],
        // 200 concurrent connections from one forwarder: at the default 256 MiB one peer may hold
        // 153 streams (half of what fits), so this node is sized as a user with such a client
        // would size it: 512 MiB lets one peer hold 563.
        limits: { memoryMiB: 512 },
      },
      { env },
    );
    const free = await Promise.all([0, 1, 2].map(() => freePort()));
    ports.sink = free[0] ?? 0;
    ports.source = free[1] ?? 0;
    ports.echo = free[2] ?? 0;
    forwarder = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        forward: [
          { name: 'sink', localPort: ports.sink },
          { name: 'source', localPort: ports.source },
          { name: 'echo', localPort: ports.echo },
        ],
      },
      { env },
    );
    await eventually(
      async () =>
        (await forwarder.status()).forwards.every((f) => f.providers.length === 1) ? true : undefined,
      20_000,
      'providers',
    );
  });

  afterAll(async () => {
    await Promise.allSettled([forwarder?.stop(), exposer?.stop(), relay?.stop()]);
    await Promise.allSettled(Object.values(servers).map((s) => s.close()));
  });

  it('is ready once connected with every forward bound', async () => {
    const res = await fetch(`http://${forwarder.admin}/readyz`);
    expect(res.status).toBe(200);
    const status = await forwarder.status();
    expect(status.ready).toBe(true);
    expect(status.forwards.map((f) => f.listening)).toEqual([true, true, true]);
    expect(status.forwards[0]?.providers[0]?.peer).toBe(exposer.peerId);
  });

  it('carries 1 GiB upstream intact to a server that answers only after FIN', async () => {
    const r = await upload(ports.sink, GiB);
    expect(r.bytes).toBe(GiB);
    expect(r.answered).toBe(r.expected);
  }, 300_000);

  it('carries 1 GiB downstream intact', async () => {
    const r = await download(ports.source, GiB);
    expect(r.bytes).toBe(GiB);
    expect(r.received).toBe(r.expected);
  }, 300_000);

  it('counts the gigabytes in /metrics on both ends', async () => {
    const sent = await forwarder.metric('peertunnel_stream_bytes_total', {
      service: 'sink',
      side: 'forward',
      direction: 'sent',
    });
    const received = await forwarder.metric('peertunnel_stream_bytes_total', {
      service: 'source',
      side: 'forward',
      direction: 'received',
    });
    expect(sent).toBeGreaterThanOrEqual(GiB);
    expect(received).toBeGreaterThanOrEqual(GiB);
    const exposed = await exposer.metric('peertunnel_stream_bytes_total', {
      service: 'sink',
      side: 'expose',
      direction: 'received',
    });
    expect(exposed).toBeGreaterThanOrEqual(GiB);
    expect(await forwarder.metric('peertunnel_forward_providers', { service: 'sink' })).toBe(1);
    expect(await forwarder.metric('peertunnel_forward_listener_up', { service: 'echo' })).toBe(1);
  });

  it('runs 200 concurrent connections intact over one libp2p connection', async () => {
    const before = await exposer.metric('peertunnel_streams_opened_total', {
      service: 'echo',
      side: 'expose',
    });
    const results = await Promise.all(
      Array.from({ length: 200 }, () => echoRoundTrip(ports.echo, 64 * 1024)),
    );
    expect(results.filter((ok) => ok)).toHaveLength(200);
    const after = await exposer.metric('peertunnel_streams_opened_total', {
      service: 'echo',
      side: 'expose',
    });
    expect(after - before).toBe(200);
    const status = await forwarder.status();
    expect(status.peers.filter((p) => p.peer === exposer.peerId)).toHaveLength(1);
    expect(await forwarder.metric('peertunnel_streams_failed_total', { service: 'echo' })).toBe(0);
  }, 120_000);

  it('keeps other connections flowing and memory bounded while one reader stalls', async () => {
    const stalled = await connectTo(ports.source);
    stalled.pause();
    const seedHex = '00112233445566778899aabbccddeeff';
    stalled.write(`${seedHex} ${256 * MiB}\n`);
    await new Promise((r) => setTimeout(r, 1_500));
    const rssBefore = { f: await rssOf(forwarder.proc.pid ?? 0), e: await rssOf(exposer.proc.pid ?? 0) };
    // 64 MiB through 16 other connections while 256 MiB wait behind the stalled one.
    const others = await Promise.all(Array.from({ length: 16 }, () => echoRoundTrip(ports.echo, 4 * MiB)));
    expect(others.every((ok) => ok)).toBe(true);
    const up = await upload(ports.sink, 32 * MiB);
    expect(up.answered).toBe(up.expected);
    const rssDuring = { f: await rssOf(forwarder.proc.pid ?? 0), e: await rssOf(exposer.proc.pid ?? 0) };
    // The stalled stream may hold at most its yamux window plus socket buffers on each side.
    expect(rssDuring.f - rssBefore.f).toBeLessThan(96 * MiB);
    expect(rssDuring.e - rssBefore.e).toBeLessThan(96 * MiB);
    // The stalled connection then resumes and gets every byte, in order.
    const { createHash } = await import('node:crypto');
    const { expectedHash } = await import('../helpers/traffic.js');
    const h = createHash('sha256');
    let n = 0;
    const done = readAll(stalled, (d) => {
      n += d.length;
      h.update(d);
    });
    stalled.resume();
    await done;
    expect(n).toBe(256 * MiB);
    expect(h.digest('hex')).toBe(expectedHash(Buffer.from(seedHex, 'hex'), 256 * MiB));
  }, 180_000);

  it('refuses and counts a member asking for a name that is not exposed', async () => {
    const before = await exposer.metric('peertunnel_streams_refused_total', { reason: 'not_exposed' });
    const probe = join(REPO_ROOT, 'dist', 'test', 'helpers', 'probe-protocol.js');
    const target = exposer.addresses[0] ?? '';
    const { stdout } = await run(
      process.execPath,
      [probe, KEY_ENV, target, '/x/peertunnel/secret-admin/1.0.0'],
      {
        env: { ...process.env, ...env },
      },
    );
    expect(JSON.parse(stdout.trim().split('\n').pop() ?? '{}')).toMatchObject({ result: 'refused' });
    await eventually(
      async () =>
        (await exposer.metric('peertunnel_streams_refused_total', { reason: 'not_exposed' })) > before
          ? true
          : undefined,
      5_000,
      'refusal counter',
    );
    // The same member reaches an exposed name: the refusal was about the name, not the member.
    const ok = await run(process.execPath, [probe, KEY_ENV, target, '/x/peertunnel/echo/1.0.0'], {
      env: { ...process.env, ...env },
    });
    expect(JSON.parse(ok.stdout.trim().split('\n').pop() ?? '{}')).toMatchObject({ result: 'ok' });
  }, 60_000);

  it('keeps a node with the wrong swarm key out of the network and the DHT', async () => {
    const wrongEnv = { [KEY_ENV]: testSwarmKey() };
    const port = await freePort();
    const outsider = await startNodeProcess(
      {
        ...base,
        bootstrap: [...relay.addresses, ...exposer.addresses],
        forward: [{ name: 'echo', localPort: port }],
      },
      { env: wrongEnv },
    );
    try {
      await new Promise((r) => setTimeout(r, 4_000));
      const status = await outsider.status();
      expect(status.peers).toEqual([]);
      expect(status.ready).toBe(false);
      expect(status.forwards[0]?.providers).toEqual([]);
      expect(await outsider.metric('peertunnel_dht_lookups_total', { result: 'found' })).toBe(0);
      expect((await relay.status()).peers.map((p) => p.peer)).not.toContain(outsider.peerId);
      // A connection to its forward is reset, never silently answered.
      const s = await connectTo(port);
      await expect(readAll(s)).rejects.toThrow();
      expect(
        await outsider.metric('peertunnel_streams_failed_total', { service: 'echo', reason: 'no_provider' }),
      ).toBe(1);
    } finally {
      await outsider.stop();
    }
  }, 60_000);
});

describe('replicas of one service', () => {
  it('spreads new connections over two exposers and fails over within 2 s when one dies', async () => {
    const a = await nameServer('replica-a');
    const b = await nameServer('replica-b');
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const nodes: NodeProcess[] = [relay];
    try {
      const ea = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, expose: [{ name: 'lb', port: a.port }] },
        { env },
      );
      nodes.push(ea);
      const eb = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, expose: [{ name: 'lb', port: b.port }] },
        { env },
      );
      nodes.push(eb);
      await Promise.all([ea, eb].map((n) => n.waitFor((l) => l.event === 'service_announced')));
      const port = await freePort();
      const fwd = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, forward: [{ name: 'lb', localPort: port }] },
        { env },
      );
      nodes.push(fwd);
      await eventually(
        async () => ((await fwd.status()).forwards[0]?.providers.length === 2 ? true : undefined),
        20_000,
        'two providers',
      );

      const ask = () => answerFrom(port);
      const spread: string[] = [];
      for (let i = 0; i < 20; i++) spread.push(await ask());
      expect(spread.filter((n) => n === 'replica-a').length).toBeGreaterThanOrEqual(5);
      expect(spread.filter((n) => n === 'replica-b').length).toBeGreaterThanOrEqual(5);
      expect(await fwd.metric('peertunnel_forward_providers', { service: 'lb' })).toBe(2);

      await eb.kill();
      const killedAt = Date.now();
      const outcomes: Array<{ at: number; ok: boolean }> = [];
      while (Date.now() - killedAt < 4_000) {
        const at = Date.now() - killedAt;
        const ok = await ask().then(
          (n) => n === 'replica-a',
          () => false,
        );
        outcomes.push({ at, ok });
      }
      const late = outcomes.filter((o) => o.at >= 2_000);
      expect(late.length).toBeGreaterThan(0);
      expect(late.every((o) => o.ok)).toBe(true);
      const firstOk = outcomes.find((o) => o.ok);
      expect(firstOk?.at).toBeLessThan(2_000);
      // Every client closed its side too, so every tunnel through a ended, and its stream slot
      // with it: none was refused as busy.
      await eventually(
        async () => ((await ea.status()).exposes[0]?.activeConnections === 0 ? true : undefined),
        5_000,
        'every tunnel through a closed',
      );
      expect(await ea.metric('peertunnel_streams_active', { service: 'lb', side: 'expose' })).toBe(0);
      for (const reason of ['peer_limit', 'total_limit'])
        expect(await ea.metric('peertunnel_streams_refused_total', { reason })).toBe(0);
    } finally {
      await Promise.allSettled(nodes.reverse().map((n) => n.stop()));
      await Promise.allSettled([a.close(), b.close()]);
    }
  }, 120_000);

  it('a replica stopped (SIGTERM) or killed (SIGKILL) is never tried by a new connection again, and one that comes back takes turns again', async () => {
    const N = 20;
    const a = await nameServer('replica-a');
    const b = await nameServer('replica-b');
    const dir = await mkdtemp(join(tmpdir(), 'pt-replica-'));
    const identity = join(dir, 'b.key');
    const bPeer = await writeIdentity(identity);
    const bPort = await freePort();
    // Replica b keeps its identity and port across restarts, as a pod's Secret and its IP would.
    const bConfig = {
      ...base,
      listen: [`/ip4/127.0.0.1/tcp/${bPort}`],
      identity: { file: identity },
      expose: [{ name: 'lb', port: b.port }],
    };
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const nodes: NodeProcess[] = [relay];
    let pit: { close(): Promise<void> } | undefined;
    try {
      const ea = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, expose: [{ name: 'lb', port: a.port }] },
        { env },
      );
      nodes.push(ea);
      let eb = await startNodeProcess({ ...bConfig, bootstrap: relay.addresses }, { env });
      nodes.push(eb);
      await Promise.all([ea, eb].map((n) => n.waitFor((l) => l.event === 'service_announced')));
      const port = await freePort();
      const fwd = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, forward: [{ name: 'lb', localPort: port }] },
        { env },
      );
      nodes.push(fwd);
      const ask = () => answerFrom(port);
      const providerB = async () => (await fwd.status()).forwards[0]?.providers.find((p) => p.peer === bPeer);
      /** Asks until both replicas answered and the forwarder holds a connection to b. */
      const bothInTurn = async (what: string) => {
        const seen = new Set<string>();
        await eventually(
          async () => {
            seen.add(await ask());
            return seen.size === 2 && (await providerB())?.connected === true ? true : undefined;
          },
          40_000,
          what,
        );
      };
      /** N new connections after b went away: each one's answer and duration. */
      const afterLoss = async (how: string) => {
        // The forwarder has seen b's connection close (the goodbye, or the kernel's on a kill).
        await eventually(
          async () => ((await providerB())?.connected === false ? true : undefined),
          10_000,
          `the forwarder seeing b's connection close after ${how}`,
        );
        const attemptsBefore = (await providerB())?.attempts;
        const failedOnB = () =>
          fwd.logs.filter((l) => l.event === 'provider_failed' && l.peer === bPeer).length;
        const failuresBefore = failedOnB();
        const answers: string[] = [];
        const ms: number[] = [];
        for (let i = 0; i < N; i++) {
          const started = performance.now();
          answers.push(await ask().catch((err: unknown) => `failed: ${String(err)}`));
          ms.push(Math.round(performance.now() - started));
        }
        const attemptsAfter = (await providerB())?.attempts;
        console.log(
          `[replicas] after ${how}: ${N} new connections, slowest ${Math.max(...ms)} ms: ${JSON.stringify(ms)}; b tried by ${String(attemptsAfter)} - ${String(attemptsBefore)} of them`,
        );
        return { how, answers, attemptsBefore, attemptsAfter, clientFailures: failedOnB() - failuresBefore };
      };

      await eventually(
        async () => ((await fwd.status()).forwards[0]?.providers.length === 2 ? true : undefined),
        20_000,
        'two providers',
      );
      await bothInTurn('both replicas answering');

      // A graceful stop: b closes its connections; its address then swallows redials.
      await eb.stop();
      pit = await tarpit(bPort);
      const stopped = await afterLoss('SIGTERM');

      // b comes back (same identity, same address): its bounded backoff ends and it takes turns again.
      await pit.close();
      pit = undefined;
      eb = await startNodeProcess({ ...bConfig, bootstrap: relay.addresses }, { env });
      nodes.push(eb);
      await bothInTurn('b answering again after its restart');

      await eb.kill();
      pit = await tarpit(bPort);
      const killed = await afterLoss('SIGKILL');

      for (const r of [stopped, killed]) {
        expect({ how: r.how, answers: r.answers }).toEqual({
          how: r.how,
          answers: Array(N).fill('replica-a'),
        });
        // After its connection closed, no new connection tried b: it was only dialled in the background.
        expect({ how: r.how, clientFailures: r.clientFailures }).toEqual({ how: r.how, clientFailures: 0 });
        expect({ how: r.how, attempts: r.attemptsAfter }).toEqual({ how: r.how, attempts: r.attemptsBefore });
        expect(r.attemptsBefore).toEqual(expect.any(Number));
      }
    } finally {
      await pit?.close();
      await Promise.allSettled(nodes.reverse().map((n) => n.stop()));
      await Promise.allSettled([a.close(), b.close()]);
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});

describe('draining on SIGTERM', () => {
  it('a stopped replica lets its in-flight connections finish intact while new ones go to the other', async () => {
    const a = await namedEchoServer('replica-a');
    const b = await namedEchoServer('replica-b');
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const nodes: NodeProcess[] = [relay];
    try {
      const ea = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, expose: [{ name: 'dr', port: a.port }] },
        { env },
      );
      nodes.push(ea);
      const eb = await startNodeProcess(
        {
          ...base,
          bootstrap: relay.addresses,
          expose: [{ name: 'dr', port: b.port }],
          shutdown: { drainSeconds: 15 },
        },
        { env },
      );
      nodes.push(eb);
      await Promise.all([ea, eb].map((n) => n.waitFor((l) => l.event === 'service_announced')));
      const port = await freePort();
      const fwd = await startNodeProcess(
        { ...base, bootstrap: relay.addresses, forward: [{ name: 'dr', localPort: port }] },
        { env },
      );
      nodes.push(fwd);
      await eventually(
        async () => ((await fwd.status()).forwards[0]?.providers.length === 2 ? true : undefined),
        20_000,
        'two providers',
      );

      // Connections held open through b (each first reads which replica it reached).
      const onB: EchoConnection[] = [];
      for (let i = 0; i < 40 && onB.length < 3; i++) {
        const c = await echoConnection(port);
        if (c.name === 'replica-b') onB.push(c);
        else c.socket.destroy();
      }
      expect(onB.length).toBe(3);
      // Bytes flow on them before, during and after the signal: 64 KiB every 50 ms for 3 s each.
      const transfers = onB.map((c) => c.echo(60, 64 * 1024, 50));
      await new Promise((resolve) => setTimeout(resolve, 500));
      eb.proc.kill('SIGTERM');
      await eb.waitFor((l) => l.event === 'node_draining', 5_000);

      const fresh: string[] = [];
      for (let i = 0; i < 10; i++) {
        const c = await echoConnection(port).catch((err: unknown) => ({ name: `failed: ${String(err)}` }));
        fresh.push(c.name);
        if ('socket' in c) c.socket.destroy();
      }
      const results = await Promise.all(transfers);
      const drained = await eb.waitFor((l) => l.event === 'node_drained', 20_000);
      const code = await eb.stop();
      console.log(
        `[drain] in-flight on b: ${JSON.stringify(results.map((r) => r.bytes))} bytes echoed; drained ${JSON.stringify(drained)}`,
      );

      expect(fresh).toEqual(Array(10).fill('replica-a'));
      for (const r of results) expect(r).toEqual({ bytes: 60 * 64 * 1024, intact: true, error: null });
      expect({ open: drained.open, code }).toEqual({ open: 0, code: 0 });
    } finally {
      await Promise.allSettled(nodes.reverse().map((n) => n.stop()));
      await Promise.allSettled([a.close(), b.close()]);
    }
  }, 120_000);
});

interface EchoConnection {
  name: string;
  socket: import('node:net').Socket;
  /** Sends `chunks` random chunks `everyMs` apart, then ends; resolves with what came back. */
  echo(
    chunks: number,
    size: number,
    everyMs: number,
  ): Promise<{ bytes: number; intact: boolean; error: string | null }>;
}

/** Answers each connection with its name on one line, then echoes. */
async function namedEchoServer(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const { createServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function echoConnection(port: number): Promise<EchoConnection> {
  const { createHash, randomBytes } = await import('node:crypto');
  const socket = await connectTo(port);
  let buffered = Buffer.alloc(0);
  const name = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      const nl = buffered.indexOf(10);
      if (nl < 0) return;
      socket.off('data', onData);
      socket.pause();
      resolve(buffered.subarray(0, nl).toString());
      buffered = buffered.subarray(nl + 1);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.once('end', () => reject(new Error('closed before the name line')));
  });
  const echo: EchoConnection['echo'] = async (chunks, size, everyMs) => {
    const sent = createHash('sha256');
    const got = createHash('sha256');
    let bytes = buffered.length;
    got.update(buffered);
    const done = new Promise<string | null>((resolve) => {
      socket.on('data', (d: Buffer) => {
        bytes += d.length;
        got.update(d);
      });
      socket.once('end', () => resolve(null));
      socket.once('error', (err) => resolve(err.message));
    });
    socket.resume();
    for (let i = 0; i < chunks && !socket.destroyed; i++) {
      const chunk = randomBytes(size);
      sent.update(chunk);
      socket.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    socket.end();
    const error = await done;
    return { bytes, intact: error === null && sent.digest('hex') === got.digest('hex'), error };
  };
  return { name, socket, echo };
}

/**
 * What a stopped pod's address does to a redial in a cluster: a TCP listener on the stopped node's
 * port that accepts and never answers, so a dial hangs until its timeout (on 127.0.0.1 a closed
 * port refuses at once, which would hide what a dial to a dead provider costs).
 */
async function tarpit(port: number): Promise<{ close(): Promise<void> }> {
  const { createServer } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, () => resolve());
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe('a forwarder past its share of an exposer', () => {
  const nodes: NodeProcess[] = [];
  let echo: TestServer;
  let port = 0;
  let exposer: NodeProcess;
  let forwarder: NodeProcess;

  beforeAll(async () => {
    echo = await echoServer();
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    nodes.push(relay);
    // One peer may hold 4 streams here: a burst of 16 connections from one forwarder overflows it.
    exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        expose: [{ name: 'echo', port: echo.port }],
        limits: { streams: 8, streamsPerPeer: 4 },
      },
      { env },
    );
    nodes.push(exposer);
    port = await freePort();
    forwarder = await startNodeProcess(
      { ...base, bootstrap: relay.addresses, forward: [{ name: 'echo', localPort: port }] },
      { env },
    );
    nodes.push(forwarder);
    await eventually(
      async () => ((await forwarder.status()).forwards[0]?.providers.length === 1 ? true : undefined),
      20_000,
      'a provider',
    );
  });

  afterAll(async () => {
    await Promise.allSettled(nodes.reverse().map((n) => n.stop()));
    await echo?.close();
  });

  it('waits for a slot instead of resetting its clients: a burst of 16 over a share of 4 all get through', async () => {
    const results = await Promise.all(Array.from({ length: 16 }, () => echoRoundTrip(port, 256 * 1024)));
    expect(results.filter(Boolean)).toHaveLength(16);
    // The share was reached (the exposer refused and counted), and no client saw it.
    expect(
      await exposer.metric('peertunnel_streams_refused_total', { reason: 'peer_limit' }),
    ).toBeGreaterThan(0);
    expect(await forwarder.metric('peertunnel_streams_failed_total', { service: 'echo' })).toBe(0);
  }, 60_000);
});
