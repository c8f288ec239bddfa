/**
 * A swarm-key rollover without a failed connection, with real node processes on 127.0.0.1 (the
 * CLI, as deployed): a relay/bootstrap node, two exposers of "echo" and a forwarder, all on key A.
 * The next key B is added (each node restarted in turn with { swarmKey: A, nextSwarmKey: B }), then
 * A is removed (each restarted in turn with { swarmKey: B }), while a client opens a steady
 * stream of new connections through the forward and checks each echo. None may fail. Only while
 * the forwarder itself restarts is the client paused: its listener is then gone, whatever the key.
 * Between the two rounds every node reports that no connection uses the old key any more.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { NodeConfigInput } from '../../sidecar/config/config.js';
import { CLI, eventually, type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import { type Keys, oldKeyGone, restartInTurn, SteadyClient } from '../helpers/rollover.js';
import { echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';
import { freePort } from './operator-harness.js';

interface Member {
  name: string;
  port: number;
  identity: string;
  extra: Partial<NodeConfigInput>;
  proc?: NodeProcess;
}

describe('swarm-key rollover', () => {
  let dir: string;
  let echo: TestServer;
  let client: SteadyClient;
  const members: Member[] = [];
  let keyA: string;
  let keyB: string;
  let forwardPort: number;

  const config = (m: Member, keys: Keys, bootstrap: string[]): NodeConfigInput => ({
    swarmKey: { file: keys.current },
    ...(keys.next === undefined ? {} : { nextSwarmKey: { file: keys.next } }),
    identity: { file: m.identity },
    listen: [`/ip4/127.0.0.1/tcp/${m.port}`],
    bootstrap,
    nat: { holePunch: false, relayReservations: 0 },
    shutdown: { drainSeconds: 2 },
    ...m.extra,
  });

  const relay = () => members[0] as Member;
  const relayAddr = () => relay().proc?.addresses[0] ?? '';

  async function launch(m: Member, keys: Keys): Promise<void> {
    m.proc = await startNodeProcess(config(m, keys, m === relay() ? [] : [relayAddr()]));
    const proc = m.proc;
    if (m !== relay()) await eventually(async () => ((await proc.status()).ready ? true : undefined), 20_000);
  }

  const restart = (m: Member, keys: Keys) =>
    restartInTurn(
      client,
      {
        name: m.name,
        forwarder: m.extra.forward !== undefined,
        stop: async () => m.proc?.stop(),
        start: (k) => launch(m, k),
      },
      keys,
    );

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-rollover-'));
    keyA = join(dir, 'a.key');
    keyB = join(dir, 'b.key');
    await writeFile(keyA, execFileSync(process.execPath, [CLI, 'keygen']));
    await writeFile(keyB, execFileSync(process.execPath, [CLI, 'keygen']));
    echo = await echoServer();
    forwardPort = await freePort();
    const roles: Array<[string, Partial<NodeConfigInput>]> = [
      ['relay', { role: 'relay' }],
      ['exposer-1', { expose: [{ name: 'echo', port: echo.port }] }],
      ['exposer-2', { expose: [{ name: 'echo', port: echo.port }] }],
      ['forwarder', { forward: [{ name: 'echo', localPort: forwardPort }] }],
    ];
    for (const [name, extra] of roles) {
      const identity = join(dir, `${name}.id`);
      execFileSync(process.execPath, [CLI, 'identity', '--out', identity]);
      members.push({ name, port: await freePort(), identity, extra });
    }
    for (const m of members) await launch(m, { current: keyA });
    client = new SteadyClient(() => echoRoundTrip(forwardPort, 512), {
      maxConnections: 5_000,
      maxMs: 240_000,
    });
  });

  afterAll(async () => {
    await client?.stop();
    for (const m of [...members].reverse()) await m.proc?.stop();
    await echo?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('adds the next key and removes the old one, node by node, and no connection fails', async () => {
    const warm = await eventually(
      async () => ((await echoRoundTrip(forwardPort, 64)) ? true : undefined),
      30_000,
    );
    expect(warm).toBe(true);
    client.start();

    for (const m of members) await restart(m, { current: keyA, next: keyB });
    // Every node holds both keys: once connections are made again, none uses the old one.
    await oldKeyGone(members);

    for (const m of members) await restart(m, { current: keyB });
    for (const m of members) {
      const s = await m.proc?.status();
      expect(s?.swarmKey).toMatchObject({ next: false, connections: { next: 0 } });
    }

    await client.stop();
    expect(client.failures).toEqual([]);
    expect(client.ok).toBeGreaterThan(8 * 5);
  }, 300_000);
});
