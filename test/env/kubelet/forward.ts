/**
 * Port forwarding into a lab network namespace at the process level, like `kubectl port-forward`
 * (the lab's namespaces are never linked to the host's network): inside the namespace `socat`
 * listens on a unix socket in the run dir (the file system is shared across network namespaces)
 * and connects each client to a TCP address there; on the host a net.Server on 127.0.0.1:0 pipes
 * each connection to that unix socket. Probes use the unix socket directly.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const READY_TIMEOUT_MS = 10_000;

/** `socat UNIX-LISTEN:<path>,fork TCP:<ip>:<port>` inside a namespace. */
export class NamespaceSocket {
  private readonly child: ChildProcess;
  private output = '';

  private constructor(
    readonly path: string,
    ns: string,
    target: string,
  ) {
    this.child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'setpriv',
        '--pdeathsig=KILL',
        '--',
        'socat',
        `UNIX-LISTEN:${path},fork,unlink-early,mode=600`,
        `TCP:${target},connect-timeout=5`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    this.child.stderr?.on('data', (c: Buffer) => {
      this.output = (this.output + c.toString()).slice(-4096);
    });
    this.child.on('error', () => {});
  }

  /** Starts socat and waits for its socket file. */
  static async open(path: string, ns: string, target: string): Promise<NamespaceSocket> {
    const s = new NamespaceSocket(path, ns, target);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!existsSync(path)) {
      if (s.child.exitCode !== null || s.child.signalCode !== null || Date.now() > deadline) {
        s.close();
        throw new Error(
          `socat for ${target} in ${ns} did not listen on ${path}: ${s.output.trim() || 'no output'}`,
        );
      }
      await sleep(20);
    }
    return s;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Kills socat and its per-connection forks (one process group). */
  close(): Promise<void> {
    const pid = this.child.pid;
    if (pid !== undefined) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
    if (!this.alive) return Promise.resolve();
    return new Promise((resolve) => this.child.once('exit', () => resolve()));
  }
}

/** 127.0.0.1:<free port> on the host, each connection piped to a NamespaceSocket. */
export class HostForward {
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    readonly address: string,
    private readonly unix: NamespaceSocket,
  ) {
    server.on('connection', (client) => {
      const upstream = connect({ path: unix.path, allowHalfOpen: true });
      this.sockets.add(client).add(upstream);
      client.once('close', () => this.sockets.delete(client));
      upstream.once('close', () => this.sockets.delete(upstream));
      // Errors end both sides, as a broken kubectl port-forward stream does.
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
    });
  }

  static async open(unix: NamespaceSocket): Promise<HostForward> {
    const server = createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('forward server has no port');
    return new HostForward(server, `127.0.0.1:${addr.port}`, unix);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.unix.close();
  }
}
