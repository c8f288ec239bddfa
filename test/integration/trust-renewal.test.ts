/**
 * Renewal under load with real node processes: both ends hold credentials of a few seconds that
 * an issuer replaces on disk; through at least five renewals of each, held connections keep
 * echoing and new ones keep opening, and nothing that should be allowed is refused.
 */

import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  freePort,
  keyEnv,
  loopbackBase,
  makeCluster,
  newMember,
  renewEvery,
  trustOf,
  writeCredential,
} from '../helpers/credentials.js';
import { eventually, type NodeProcess, startNodeProcess } from '../helpers/node-process.js';
import { connectTo, echoRoundTrip, echoServer, type TestServer } from '../helpers/traffic.js';

const env = keyEnv;
const base = loopbackBase;
const LIFETIME_S = 4;
const RENEW_MS = 1_500;
const HELD = 6;

/** Echo round trips on one connection until `until()`; returns how many came back intact. */
async function echoLoop(port: number, until: () => boolean): Promise<{ intact: number; broken: number }> {
  const s = await connectTo(port);
  let intact = 0;
  let broken = 0;
  let pending: { data: Buffer; got: Buffer[]; n: number; done: () => void } | undefined;
  s.on('data', (d: Buffer) => {
    if (pending === undefined) return;
    pending.got.push(d);
    pending.n += d.length;
    if (pending.n >= pending.data.length) pending.done();
  });
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  s.on('error', () => undefined);
  while (!until() && !s.destroyed) {
    const data = randomBytes(16_384);
    const back = await Promise.race([
      new Promise<Buffer>((resolve) => {
        pending = { data, got: [], n: 0, done: () => resolve(Buffer.concat(pending?.got ?? [])) };
        s.write(data);
      }),
      closed.then(() => undefined),
    ]);
    if (back?.equals(data) === true) intact++;
    else broken++;
  }
  if (s.destroyed) broken++;
  s.end();
  return { intact, broken };
}

describe('credential renewal under load', () => {
  let dir: string;
  const a = makeCluster('a');
  let relay: NodeProcess;
  let exposer: NodeProcess;
  let forwarder: NodeProcess;
  let echo: TestServer;
  let port = 0;
  const renewers: ReturnType<typeof renewEvery>[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pt-renew-'));
    echo = await echoServer();
    port = await freePort();
    relay = await startNodeProcess({ ...base, role: 'relay' }, { env });
    const e = await newMember(dir);
    const f = await newMember(dir);
    const ew = { cluster: a, namespace: 'shop', expose: ['echo'] };
    const fw = { cluster: a, namespace: 'shop' };
    await writeCredential(e, ew, LIFETIME_S);
    await writeCredential(f, fw, LIFETIME_S);
    renewers.push(renewEvery(e, ew, LIFETIME_S, RENEW_MS), renewEvery(f, fw, LIFETIME_S, RENEW_MS));
    exposer = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        ...trustOf(e, [a]),
        expose: [{ name: 'echo', port: echo.port, allowFrom: [{ cluster: 'a', namespace: 'shop' }] }],
      },
      { env },
    );
    forwarder = await startNodeProcess(
      {
        ...base,
        bootstrap: relay.addresses,
        ...trustOf(f, [a]),
        forward: [{ name: 'echo', localPort: port }],
      },
      { env },
    );
    await eventually(async () => ((await echoRoundTrip(port, 1024)) ? true : undefined), 30_000, 'a tunnel');
  }, 120_000);

  afterAll(async () => {
    for (const r of renewers) r.stop();
    await Promise.allSettled([forwarder?.stop(), exposer?.stop(), relay?.stop()]);
    await echo?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses nothing that should be allowed through five renewals of each end', async () => {
    const renewed = (n: NodeProcess) => n.logs.filter((l) => l.event === 'credential_renewed').length;
    const start = { e: renewed(exposer), f: renewed(forwarder) };
    const enough = () => renewed(exposer) - start.e >= 5 && renewed(forwarder) - start.f >= 5;
    let fresh = 0;
    let freshBroken = 0;
    const newConnections = (async () => {
      while (!enough()) {
        if (await echoRoundTrip(port, 8_192).catch(() => false)) fresh++;
        else freshBroken++;
      }
    })();
    const held = await Promise.all(Array.from({ length: HELD }, () => echoLoop(port, enough)));
    await newConnections;
    expect(renewed(exposer) - start.e).toBeGreaterThanOrEqual(5);
    expect(renewed(forwarder) - start.f).toBeGreaterThanOrEqual(5);
    expect(held.map((h) => h.broken)).toEqual(Array(HELD).fill(0));
    expect(held.every((h) => h.intact > 0)).toBe(true);
    expect(freshBroken).toBe(0);
    expect(fresh).toBeGreaterThan(0);
    for (const n of [exposer, forwarder]) {
      expect(await n.metric('peertunnel_trust_refused_total')).toBe(0);
      expect(await n.metric('peertunnel_trust_revoked_total')).toBe(0);
      expect(await n.metric('peertunnel_streams_failed_total')).toBe(0);
    }
    // The gauge follows the renewals: later than any credential of the start could expire.
    const expiry = await exposer.metric('peertunnel_credential_expiry_timestamp_seconds');
    expect(expiry).toBeGreaterThan(Math.floor(Date.now() / 1000));
  }, 120_000);
});
