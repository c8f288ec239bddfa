/**
 * The socket <-> stream copy loop, with real TCP sockets on 127.0.0.1 and an in-memory libp2p
 * stream pair: bytes both ways, half-close, reset propagation, and read-ahead delivered before
 * the end.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from '@jest/globals';
import type { Stream } from '@libp2p/interface';
import { streamPair } from '@libp2p/utils';
import { pipe } from '../../../../sidecar/tunnel/pipe.js';

/** A connected pair of TCP sockets: [the side a test drives, the side the pipe takes]. */
async function socketPair(): Promise<[Socket, Socket, Server]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen({ host: '127.0.0.1', port: 0 }, r));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const outer = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await new Promise((r) => outer.once('connect', r));
  return [outer, await accepted, server];
}

function readAll(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
  });
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** client <-tcp-> [pipe A] <-stream pair-> [pipe B] <-tcp-> server */
async function tunnel(): Promise<{
  client: Socket;
  server: Socket;
  a: Stream;
  b: Stream;
  done: Promise<unknown>;
}> {
  const [client, innerA, s1] = await socketPair();
  const [server, innerB, s2] = await socketPair();
  servers.push(s1, s2);
  const [a, b] = await streamPair();
  const done = Promise.all([pipe(innerA, a), pipe(innerB, b)]);
  return { client, server, a, b, done };
}

describe('pipe', () => {
  it('carries bytes both ways and a half-close in each direction', async () => {
    const { client, server, done } = await tunnel();
    const request = randomBytes(3 * 1024 * 1024);
    const response = randomBytes(2 * 1024 * 1024);
    const serverGot = readAll(server);
    const clientGot = readAll(client);
    client.end(request);
    // The server answers only after the client's FIN, as some protocols do.
    expect((await serverGot).equals(request)).toBe(true);
    server.end(response);
    expect((await clientGot).equals(response)).toBe(true);
    const results = (await done) as Array<{ outcome: string; sent: number; received: number }>;
    expect(results.map((r) => r.outcome)).toEqual(['closed', 'closed']);
    expect(results[0]?.sent).toBe(request.length);
    expect(results[0]?.received).toBe(response.length);
  });

  it('turns a reset on one side into a reset on the other, never a clean end', async () => {
    const { client, server, done } = await tunnel();
    const clientGot = readAll(client);
    client.write('hello');
    await new Promise((r) => server.once('data', r));
    server.resetAndDestroy();
    await expect(clientGot).rejects.toMatchObject({ code: 'ECONNRESET' });
    const results = (await done) as Array<{ outcome: string }>;
    expect(results.map((r) => r.outcome).sort()).toEqual(['local_error', 'reset_by_peer']);
  });

  it('delivers bytes that arrived before the pipe was attached, then the end', async () => {
    const [client, inner, s] = await socketPair();
    servers.push(s);
    const [a, b] = await streamPair();
    const early = randomBytes(256 * 1024);
    b.send(early);
    await b.close();
    await new Promise((r) => setTimeout(r, 50));
    const got = readAll(client);
    const result = pipe(inner, a);
    client.end();
    expect((await got).equals(early)).toBe(true);
    expect((await result).outcome).toBe('closed');
  });

  it('resets the socket when the connection under the stream goes away without a FIN', async () => {
    const [client, inner, s] = await socketPair();
    servers.push(s);
    const [a, b] = await streamPair();
    const result = pipe(inner, a);
    const clientGot = readAll(client);
    b.send(randomBytes(1024));
    await new Promise((r) => setTimeout(r, 20));
    // What a relay dying or cutting a limited circuit looks like from one stream.
    (a as unknown as { onTransportClosed(): void }).onTransportClosed();
    await expect(clientGot).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect((await result).outcome).toBe('reset_by_peer');
  });

  it.each([
    ['reset by the remote', 'reset_by_peer'],
    ['aborted here', 'local_error'],
  ])('resets the socket when the stream was %s before the pipe began', async (_, outcome) => {
    const [client, inner, s] = await socketPair();
    servers.push(s);
    const [a, b] = await streamPair();
    const closed = new Promise((r) => a.addEventListener('close', r, { once: true }));
    if (outcome === 'reset_by_peer') b.abort(new Error('gone'));
    else a.abort(new Error('connection closed'));
    await closed;
    expect(a.status).toBe(outcome === 'reset_by_peer' ? 'reset' : 'aborted');
    const clientGot = readAll(client);
    const result = pipe(inner, a);
    await expect(clientGot).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect((await result).outcome).toBe(outcome);
  });

  it('stops when aborted, resetting both sides', async () => {
    const [client, inner, s] = await socketPair();
    servers.push(s);
    const [a, b] = await streamPair();
    const controller = new AbortController();
    const result = pipe(inner, a, { signal: controller.signal });
    const clientGot = readAll(client);
    const remoteClosed = new Promise((r) => b.addEventListener('close', r, { once: true }));
    controller.abort();
    await expect(clientGot).rejects.toMatchObject({ code: 'ECONNRESET' });
    await remoteClosed;
    expect((await result).outcome).toBe('aborted');
  });
});
