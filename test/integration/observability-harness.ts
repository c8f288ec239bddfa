/**
 * Shared by metrics.test.ts and prometheus.test.ts: a data plane of real node processes on
 * 127.0.0.1 (relay, exposer, forwarder) with traffic that moves every metric a loopback run can
 * move (including a failed and a refused stream), and an operator process against the real API
 * server that reconciles, answers the webhook and injects a pod.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import type { PeerNetwork, PeerTunnel } from '../../crds/schema.js';
import type { ControlPlane } from '../env/control-plane.js';
import {
  eventually,
  type NodeProcess,
  REPO_ROOT,
  startNodeProcess,
  testSwarmKey,
} from '../helpers/node-process.js';
import {
  connectTo,
  download,
  echoRoundTrip,
  echoServer,
  readAll,
  sinkServer,
  sourceServer,
  type TestServer,
  upload,
} from '../helpers/traffic.js';
import {
  freePort,
  installOperatorPrerequisites,
  type OperatorProcess,
  review,
  startOperator,
  waitForReason,
  webhookCa,
} from './operator-harness.js';

const run = promisify(execFile);
const KEY_ENV = 'PEERTUNNEL_TEST_KEY';

export interface DataPlane {
  relay: NodeProcess;
  exposer: NodeProcess;
  forwarder: NodeProcess;
  /** Local forward ports by service name. */
  ports: Record<'echo' | 'sink' | 'source' | 'dead' | 'ghost', number>;
  /** Echo (8 × 64 KiB), 8 MiB upload, 8 MiB download through the forwards. */
  traffic(): Promise<void>;
  /**
   * traffic(), and at the same time a stream to a dead target (target_unreachable at the exposer),
   * one with no provider (no_provider at the forwarder, ~10 s) and a refused one (not_exposed).
   */
  drive(): Promise<void>;
  /** Opens an echo connection and keeps it open (its stream stays active) until the callback ends. */
  withOpenStream<T>(fn: () => Promise<T>): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Services: echo, sink, source (working), dead (exposed, but its target port is closed: the
 * exposer fails with target_unreachable), ghost (forwarded, exposed by no one: no_provider).
 */
export async function startDataPlane(): Promise<DataPlane> {
  const env = { [KEY_ENV]: testSwarmKey() };
  const base = {
    swarmKey: { env: KEY_ENV },
    listen: ['/ip4/127.0.0.1/tcp/0'],
    log: { level: 'info' as const },
  };
  const servers: TestServer[] = [await echoServer(), await sinkServer(), await sourceServer()];
  const [echo, sink, source] = servers;
  const nodes: NodeProcess[] = [];
  const stop = async () => {
    await Promise.allSettled([...nodes].reverse().map((n) => n.stop()));
    await Promise.allSettled(servers.map((s) => s.close()));
  };
  try {
    const closedPort = await freePort();
    const relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    nodes.push(relay);
    const exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        expose: [
          { name: 'echo', port: echo?.port ?? 0 },
          { name: 'sink', port: sink?.port ?? 0 },
          { name: 'source', port: source?.port ?? 0 },
          { name: 'dead', port: closedPort },
        ],
      },
      { env },
    );
    nodes.push(exposer);
    const ports = {
      echo: await freePort(),
      sink: await freePort(),
      source: await freePort(),
      dead: await freePort(),
      ghost: await freePort(),
    };
    const forwarder = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        forward: Object.entries(ports).map(([name, localPort]) => ({ name, localPort })),
      },
      { env },
    );
    nodes.push(forwarder);
    await eventually(
      async () =>
        (await forwarder.status()).forwards.every((f) => f.providers.length === (f.name === 'ghost' ? 0 : 1))
          ? true
          : undefined,
      20_000,
      'providers of echo, sink, source and dead',
    );
    const probe = join(REPO_ROOT, 'dist', 'test', 'helpers', 'probe-protocol.js');
    const traffic = async () => {
      const echoes = await Promise.all(Array.from({ length: 8 }, () => echoRoundTrip(ports.echo, 64 * 1024)));
      if (!echoes.every((ok) => ok)) throw new Error('echo through the tunnel failed');
      const up = await upload(ports.sink, 8 * 1024 * 1024);
      if (up.answered !== up.expected) throw new Error('upload through the tunnel failed');
      const down = await download(ports.source, 8 * 1024 * 1024);
      if (down.received !== down.expected) throw new Error('download through the tunnel failed');
    };
    /** Connects and waits for the reset: the forwarder may reset it before the client sees it open. */
    const failedStream = (port: number) =>
      connectTo(port).then(
        (s) => {
          s.on('error', () => undefined);
          s.write('hello\n');
          return readAll(s).then(
            () => undefined,
            () => undefined,
          );
        },
        () => undefined,
      );
    const refused = async () => {
      const { stdout } = await run(
        process.execPath,
        [probe, KEY_ENV, exposer.addresses[0] ?? '', '/x/peertunnel/not-exposed/1.0.0'],
        { env: { ...process.env, ...env } },
      );
      if (!stdout.includes('"refused"')) throw new Error(`probe was not refused: ${stdout}`);
    };
    // The ghost stream takes ~10 s: the forwarder waits for a provider to appear before it resets.
    const drive = async () => {
      await Promise.all([traffic(), failedStream(ports.dead), failedStream(ports.ghost), refused()]);
    };
    const withOpenStream = async <T>(fn: () => Promise<T>): Promise<T> => {
      const s = await connectTo(ports.echo);
      try {
        await new Promise<void>((resolve, reject) => {
          s.once('data', () => resolve());
          s.once('error', reject);
          s.write('ping\n');
        });
        return await fn();
      } finally {
        s.destroy();
      }
    };
    return { relay, exposer, forwarder, ports, traffic, drive, withOpenStream, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

const FIXTURE = fileURLToPath(new URL('../fixtures/inject/native-expose', import.meta.url));

/**
 * An operator (leader) with the inject fixture's PeerNetwork and PeerTunnel, a pod created
 * through the API server (the webhook injects it), and one AdmissionReview for an unselected pod
 * (skipped): reconciles, status writes, webhook requests and injected pods all move.
 */
export async function startObservedOperator(cp: ControlPlane): Promise<OperatorProcess> {
  const input = parse(readFileSync(`${FIXTURE}.input.yaml`, 'utf8')) as {
    pod: V1Pod;
    tunnels: PeerTunnel[];
    networks: PeerNetwork[];
  };
  const ns = input.pod.metadata?.namespace ?? 'shop';
  await installOperatorPrerequisites(cp);
  const port = await freePort();
  const op = await startOperator(cp, { identity: 'op-observed', webhookPort: port });
  try {
    await cp.kubectlOk(['create', 'namespace', ns]);
    await cp.kubectlOk([
      '-n',
      ns,
      'create',
      'secret',
      'generic',
      'mesh-key',
      `--from-literal=swarm.key=${testSwarmKey()}`,
    ]);
    await cp.apply([...input.networks, ...input.tunnels]);
    const tunnel = input.tunnels[0]?.metadata?.name ?? '';
    await waitForReason(cp, `peertunnel/${tunnel}`, ns, 'NoPodsSelected');
    await cp.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(input.pod) });
    const ca = await webhookCa(cp);
    await review(
      port,
      ca,
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: 'plain', namespace: ns, labels: { app: 'unrelated' } },
        spec: { containers: [{ name: 'app', image: 'example/app:1' }] },
      },
      ns,
    );
    await eventually(
      async () => ((await op.metric('peertunnel_operator_injected_pods')) >= 1 ? true : undefined),
      30_000,
      'an injected pod in the operator cache',
    );
    return op;
  } catch (err) {
    await op.stop();
    throw err;
  }
}
