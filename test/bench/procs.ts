/**
 * Process helpers for the bench: the socat two-hop baseline and memory of process trees (Linux
 * /proc only, like the rest of the test tooling).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';

export interface SocatRelay {
  /** The port a client connects to (first hop). */
  port: number;
  /** Each hop's listening socat process; forked per-connection children hang below them. */
  hops: [ChildProcess, ChildProcess];
  /** From spawning both processes until both report they are listening. */
  startMs: number;
  stop(): Promise<void>;
}

/** Waits for socat's `-d -d` notice that it is listening; rejects if it exits first. */
function listening(proc: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`socat did not listen: ${err.slice(-300)}`)), timeoutMs);
    const onData = (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(timer);
        proc.stderr?.off('data', onData);
        // Keep draining: a full stderr pipe would block socat on its next notice.
        proc.stderr?.resume();
        resolve();
      }
    };
    proc.stderr?.on('data', onData);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socat exited with ${code}: ${err.slice(-300)}`));
    });
  });
}

function spawnHop(listenPort: number, targetPort: number): ChildProcess {
  // fork: one process per connection, socat's usual relay mode. backlog: the default of 5 would
  // drop SYNs under 32 concurrent connects and measure the kernel's 1 s SYN retry instead of socat.
  // -t: after one side's FIN socat closes the other direction within 0.5 s by default, cutting
  // off a server that answers after FIN while it still reads a backlog; the tunnel waits.
  const proc = spawn(
    'socat',
    [
      '-d',
      '-d',
      '-t',
      '60',
      `TCP4-LISTEN:${listenPort},bind=127.0.0.1,fork,reuseaddr,backlog=1024,nodelay`,
      `TCP4:127.0.0.1:${targetPort},nodelay`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  // Every forked child logs too; only the tail is ever needed.
  proc.stderr?.setEncoding('latin1');
  return proc;
}

/** client → socat (hop 1) → socat (hop 2) → server at `serverPort`. */
export async function startSocatRelay(serverPort: number, ports: [number, number]): Promise<SocatRelay> {
  const [p1, p2] = ports;
  const started = performance.now();
  const hop2 = spawnHop(p2, serverPort);
  const hop1 = spawnHop(p1, p2);
  await Promise.all([listening(hop1, 5_000), listening(hop2, 5_000)]);
  const startMs = performance.now() - started;
  const stopOne = async (p: ChildProcess) => {
    // socat's forked children would outlive the parent: take the whole tree down.
    for (const pid of await descendants(p.pid ?? -1)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGKILL');
      await exited;
    }
  };
  return {
    port: p1,
    hops: [hop1, hop2],
    startMs,
    stop: async () => {
      await Promise.all([stopOne(hop1), stopOne(hop2)]);
    },
  };
}

/** Every process below `root` (not `root` itself), from /proc's parent links. */
export async function descendants(root: number): Promise<number[]> {
  const parentOf = new Map<number, number>();
  for (const name of await readdir('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'latin1');
      // The command name may contain spaces and parentheses: fields start after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parentOf.set(pid, Number(fields[1]));
    } catch {
      // exited while listing
    }
  }
  const out: number[] = [];
  const frontier = [root];
  while (frontier.length > 0) {
    const p = frontier.pop();
    for (const [child, parent] of parentOf) {
      if (parent === p) {
        out.push(child);
        frontier.push(child);
      }
    }
  }
  return out;
}

/**
 * Proportional set size of a process and all its descendants, in bytes. For forked socat
 * children RSS would count the shared libc and socat pages once per child; PSS splits them.
 */
export async function treePss(root: number): Promise<number> {
  let total = 0;
  for (const pid of [root, ...(await descendants(root))]) {
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/smaps_rollup`, 'latin1'));
      total += Number(m?.[1] ?? 0) * 1024;
    } catch {
      // exited while measuring
    }
  }
  return total;
}

/** CPU seconds (user + system) a process has used so far, from /proc/PID/stat (100 Hz ticks). */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'latin1');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
