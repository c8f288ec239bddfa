/**
 * The admin HTTP server on 127.0.0.1: /status only for a local caller or the bearer token whose
 * SHA-256 the config carries (refusals counted and logged), and the limits every HTTP server of
 * the project gets: idle sockets are closed at the header deadline and connections over the cap
 * are dropped, so the probes get through again.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from '@jest/globals';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { AdminServer, bearerMatches, isLoopback } from '../../../../sidecar/admin/admin-server.js';
import type { HttpRefusal } from '../../../../sidecar/admin/http-server.js';
import { parseConfig } from '../../../../sidecar/config/config.js';

const TOKEN = 'tVq3yq2tY0f6hQm3Yy2mJm1k8tq1nC0d9w8s7r6p5o4';
const HASH = createHash('sha256').update(TOKEN).digest('hex');

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: pino({ level: 'info' }, stream) };
}

const started: AdminServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const a of started.splice(0)) await a.stop();
});

async function admin(o: {
  token?: string;
  local?: boolean;
  limits?: ConstructorParameters<typeof AdminServer>[1]['limits'];
}) {
  const refused: HttpRefusal[] = [];
  const log = capture();
  const server = new AdminServer(
    { registry: new Registry(), notReadyReasons: () => [], status: () => ({ peerId: 'me' }) },
    {
      listen: '127.0.0.1:0',
      statusTokenSha256: o.token,
      limits: o.limits,
      onRefused: (r) => refused.push(r),
      // Every test caller is on 127.0.0.1; this stands for a caller on another host.
      isLocalCaller: o.local === false ? () => false : undefined,
    },
    log.logger,
  );
  await server.start();
  started.push(server);
  const get = (path: string, headers: Record<string, string> = {}) =>
    fetch(`http://127.0.0.1:${server.port}${path}`, { headers, signal: AbortSignal.timeout(5_000) });
  return { server, refused, lines: log.lines, get };
}

describe('admin /status', () => {
  it('answers a loopback caller without a token', async () => {
    const a = await admin({});
    const res = await a.get('/status');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ peerId: 'me' });
  });

  it('refuses another host without a token, with a wrong one, and when no token is configured; counts and logs each', async () => {
    const a = await admin({ token: HASH, local: false });
    expect((await a.get('/status')).status).toBe(403);
    expect((await a.get('/status', { authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await a.get('/status', { authorization: `Basic ${TOKEN}` })).status).toBe(401);
    // Probes and Prometheus are unaffected.
    expect((await a.get('/readyz')).status).toBe(200);
    expect((await a.get('/metrics')).status).toBe(200);
    expect(a.refused).toEqual(['status_forbidden', 'status_bad_token', 'status_bad_token']);
    expect(a.lines.filter((l) => l.event === 'admin_status_refused').map((l) => l.reason)).toEqual([
      'status_forbidden',
      'status_bad_token',
      'status_bad_token',
    ]);
    const none = await admin({ local: false });
    expect((await none.get('/status', { authorization: `Bearer ${TOKEN}` })).status).toBe(401);
  });

  it('answers another host that shows the token', async () => {
    const a = await admin({ token: HASH, local: false });
    const res = await a.get('/status', { authorization: `Bearer ${TOKEN}` });
    expect(res.status).toBe(200);
    expect(a.refused).toEqual([]);
  });

  it('compares hashes of the token, and knows loopback in all its forms', () => {
    const expected = Buffer.from(HASH, 'hex');
    expect(bearerMatches(`Bearer ${TOKEN}`, expected)).toBe(true);
    expect(bearerMatches(`Bearer ${TOKEN}x`, expected)).toBe(false);
    expect(bearerMatches(undefined, expected)).toBe(false);
    expect(bearerMatches('Bearer ', expected)).toBe(false);
    for (const a of ['127.0.0.1', '127.9.9.9', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.1', '::ffff:10.0.0.1', '::', '0.0.0.0', 'fe80::1', undefined])
      expect(isLoopback(a)).toBe(false);
  });

  it('config: admin.statusTokenSha256 must be 64 lowercase hex characters, said in one line', () => {
    expect(parseConfig({ swarmKey: { env: 'K' }, admin: { statusTokenSha256: HASH } }).admin).toEqual({
      listen: '127.0.0.1:9090',
      statusTokenSha256: HASH,
    });
    for (const bad of [HASH.toUpperCase(), HASH.slice(1), 'x'.repeat(64), 42]) {
      let message = '';
      try {
        parseConfig({ swarmKey: { env: 'K' }, admin: { statusTokenSha256: bad } });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(
        /^[^\n]*admin\.statusTokenSha256: expected the SHA-256 of the status token[^\n]*$/,
      );
    }
  });
});

function idleSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
}

const closed = (s: Socket) =>
  new Promise<number>((resolve) => {
    const t0 = Date.now();
    if (s.destroyed) resolve(0);
    s.on('close', () => resolve(Date.now() - t0));
  });

describe('HTTP limits', () => {
  it('closes sockets that send nothing at the header deadline, drops connections over the cap (counted), and serves again', async () => {
    const a = await admin({ limits: { maxConnections: 8, headersTimeoutMs: 1_000 } });
    const port = a.server.port ?? 0;
    const idle = await Promise.all(Array.from({ length: 8 }, () => idleSocket(port)));
    // The cap is full: one more is closed at once, and counted.
    const extra = await idleSocket(port);
    expect(await closed(extra)).toBeLessThan(1_000);
    expect(a.refused).toContain('connection_limit');
    expect(a.lines.some((l) => l.event === 'admin_connection_dropped')).toBe(true);
    // The idle ones are closed by the server: header deadline (1 s) plus one check interval.
    const t0 = Date.now();
    await Promise.all(idle.map(closed));
    expect(Date.now() - t0).toBeLessThan(4_000);
    expect((await a.get('/livez')).status).toBe(200);
  }, 15_000);
});
