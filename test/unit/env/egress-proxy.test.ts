/**
 * The API server's egress proxy (test/env/egress-proxy.ts): a CONNECT to a routed `ip:port` reaches
 * the unix socket registered for it, any other target is dialled directly, anything but CONNECT is
 * refused, and the config file names the socket.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type EgressProxy, startEgressProxy } from '../../env/egress-proxy.js';

/** Sends `head` then `payload` on the proxy socket; resolves with everything read until close. */
function exchange(socketPath: string, head: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: socketPath });
    let got = '';
    s.on('data', (d: Buffer) => {
      got += d.toString();
      if (got.includes('\r\n\r\n') && !got.includes(payload) && got.startsWith('HTTP/1.1 200'))
        s.write(payload);
    });
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.write(head);
    setTimeout(() => s.end(), 500);
  });
}

/** A server that answers every connection with `name:` and what it received. */
function echo(name: string, listen: (srv: Server) => void): Server {
  const srv = createServer((c) => {
    c.on('data', (d: Buffer) => {
      c.end(`${name}:${d.toString()}`);
    });
  });
  listen(srv);
  return srv;
}

describe('egress proxy', () => {
  let dir: string;
  let proxy: EgressProxy;
  let unixServer: Server;
  let tcpServer: Server;
  let tcpPort = 0;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'egress-test-'));
    proxy = await startEgressProxy(dir, (p, t) => writeFile(p, t));
    unixServer = echo('unix', (s) => s.listen(join(dir, 'node.sock')));
    tcpServer = echo('tcp', (s) => s.listen(0, '127.0.0.1'));
    await new Promise((r) => tcpServer.once('listening', r));
    const a = tcpServer.address();
    tcpPort = typeof a === 'object' && a !== null ? a.port : 0;
    proxy.route('198.18.1.10:10250', join(dir, 'node.sock'));
  });

  afterAll(async () => {
    await proxy.close();
    unixServer.close();
    tcpServer.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('writes an egress selector config naming its socket for the cluster egress', async () => {
    const cfg = JSON.parse(await readFile(proxy.configPath, 'utf8')) as {
      kind: string;
      egressSelections: {
        name: string;
        connection: { proxyProtocol: string; transport: { uds: { udsName: string } } };
      }[];
    };
    expect(cfg.kind).toBe('EgressSelectorConfiguration');
    expect(cfg.egressSelections[0]?.name).toBe('cluster');
    expect(cfg.egressSelections[0]?.connection.proxyProtocol).toBe('HTTPConnect');
    expect(cfg.egressSelections[0]?.connection.transport.uds.udsName).toBe(proxy.socketPath);
  });

  it('sends a routed target to its unix socket', async () => {
    const got = await exchange(
      proxy.socketPath,
      'CONNECT 198.18.1.10:10250 HTTP/1.1\r\nHost: x\r\n\r\n',
      'ping',
    );
    expect(got).toBe('HTTP/1.1 200 Connection established\r\n\r\nunix:ping');
  });

  it('dials any other target directly', async () => {
    const got = await exchange(proxy.socketPath, `CONNECT 127.0.0.1:${tcpPort} HTTP/1.1\r\n\r\n`, 'pong');
    expect(got).toBe('HTTP/1.1 200 Connection established\r\n\r\ntcp:pong');
  });

  it('answers 502 when the target refuses, 405 to anything but CONNECT, and forgets an unrouted target', async () => {
    proxy.unroute('198.18.1.10:10250');
    expect(await exchange(proxy.socketPath, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n', 'x')).toMatch(
      /^HTTP\/1.1 502 /,
    );
    expect(await exchange(proxy.socketPath, 'GET / HTTP/1.1\r\n\r\n', 'x')).toMatch(/^HTTP\/1.1 405 /);
    proxy.route('198.18.1.10:10250', join(dir, 'node.sock'));
  });
});
