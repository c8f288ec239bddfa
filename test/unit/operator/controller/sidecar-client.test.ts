/**
 * The operator's /status poller against real HTTP servers on 127.0.0.1 that misbehave: one that
 * redirects to a listener recording hits (never hit), ones that stream 300 MiB with and without a
 * Content-Length (read no further than the cap: the server stops when the poller stops reading),
 * one that never answers (the deadline). Each fails with an error naming the cause. And where it
 * asks: the pod's own IP only, whatever the annotation says.
 */
import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { V1Pod } from '@kubernetes/client-node';
import {
  ADMIN_ADDRESS_ANNOTATION,
  defaultAdminAddress,
  MAX_STATUS_BYTES,
  pollStatus,
  StatusPollError,
} from '../../../../operator/controller/sidecar-client.js';

const MiB = 1024 * 1024;
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

async function serve(handler: Parameters<typeof createServer>[1]): Promise<number> {
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const a = s.address();
  return typeof a === 'object' && a !== null ? a.port : 0;
}

/** Streams `total` bytes of JSON-ish filler, honouring backpressure; `sent` says how far it got. */
function streamer(total: number, declareLength: boolean) {
  const state = { sent: 0, done: false };
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const handler: Parameters<typeof createServer>[1] = (_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      ...(declareLength ? { 'content-length': String(total) } : {}),
    });
    const pump = () => {
      while (state.sent < total && !res.destroyed) {
        state.sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    res.on('close', () => {
      state.done = true;
    });
    pump();
  };
  return { state, handler };
}

async function pollError(port: number, o: Parameters<typeof pollStatus>[1] = {}): Promise<StatusPollError> {
  try {
    await pollStatus({ host: '127.0.0.1', port }, o);
  } catch (err) {
    if (err instanceof StatusPollError) return err;
    throw err;
  }
  throw new Error('the poll succeeded');
}

describe('status poller', () => {
  it('reads a sidecar status and sends the token', async () => {
    let auth: string | undefined;
    const port = await serve((req, res) => {
      auth = req.headers.authorization;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"peerId":"p"}');
    });
    await expect(pollStatus({ host: '127.0.0.1', port }, { token: 'tok' })).resolves.toEqual({ peerId: 'p' });
    expect(auth).toBe('Bearer tok');
  });

  it('does not follow a redirect: the other listener is never hit', async () => {
    let hits = 0;
    const elsewhere = await serve((_req, res) => {
      hits++;
      res.end('{"peerId":"elsewhere"}');
    });
    const port = await serve((_req, res) =>
      res.writeHead(302, { location: `http://127.0.0.1:${elsewhere}/status` }).end(),
    );
    const err = await pollError(port);
    expect(err.reason).toBe('redirect');
    expect(err.message).toContain('302');
    expect(hits).toBe(0);
  });

  for (const declareLength of [false, true]) {
    it(`stops reading a 300 MiB body at the cap (${declareLength ? 'Content-Length declared' : 'chunked'})`, async () => {
      const s = streamer(300 * MiB, declareLength);
      const port = await serve(s.handler);
      const t0 = Date.now();
      const err = await pollError(port, { timeoutMs: 10_000 });
      const ms = Date.now() - t0;
      expect(err.reason).toBe('too_large');
      expect(err.message).toContain(`${MAX_STATUS_BYTES}-byte cap`);
      // The server notices the poller gone and stops: it sent the cap plus what sockets buffer.
      for (let i = 0; i < 50 && !s.state.done; i++) await new Promise((r) => setTimeout(r, 20));
      expect(s.state.done).toBe(true);
      expect(s.state.sent).toBeLessThan(16 * MiB);
      expect(ms).toBeLessThan(2_000);
    });
  }

  it('gives up at the deadline on a server that never answers', async () => {
    const port = await serve(() => {});
    const t0 = Date.now();
    const err = await pollError(port, { timeoutMs: 300 });
    expect(err.reason).toBe('timeout');
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it('asks only the pod IP: an annotation may name the port there or on loopback, never another host', () => {
    const pod = (annotation: string | undefined, podIP = '10.1.2.3'): V1Pod => ({
      metadata: { annotations: annotation === undefined ? {} : { [ADMIN_ADDRESS_ANNOTATION]: annotation } },
      spec: {
        containers: [{ name: 'peertunnel', ports: [{ name: 'pt-admin', containerPort: 9191 }] }],
      },
      status: { podIP },
    });
    const trusting = defaultAdminAddress('peertunnel', 9090, true);
    const strict = defaultAdminAddress('peertunnel', 9090, false);
    expect(strict(pod('10.1.2.3:7000'))).toEqual({ host: '10.1.2.3', port: 9191 });
    expect(trusting(pod('10.1.2.3:7000'))).toEqual({ host: '10.1.2.3', port: 7000 });
    expect(trusting(pod('169.254.169.254:80'))).toEqual({ host: '10.1.2.3', port: 9191 });
    expect(trusting(pod('example.com:80'))).toEqual({ host: '10.1.2.3', port: 9191 });
    // Test pod runners forward admin ports to the operator's loopback (only with the test flag).
    expect(trusting(pod('127.0.0.1:7000'))).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(strict(pod('127.0.0.1:7000'))).toEqual({ host: '10.1.2.3', port: 9191 });
    expect(trusting(pod(undefined, 'not-an-ip'))).toBeUndefined();
  });
});
