/**
 * One run of a container's process: started with `ip netns exec <ns>` in the pod's network
 * namespace, optionally in a private mount namespace with its volumes (volumes.ts), as its user
 * (`setpriv`), in a process group of its own so a stop reaches every process of it. `setpriv
 * --pdeathsig KILL` (set after the uid change, which would clear it) takes it down with the test
 * process should that die without stopping the kubelet.
 */
import { type ChildProcess, spawn } from 'node:child_process';

/** Last output kept per container (all runs), for failure messages. */
const OUTPUT_TAIL_CHARS = 16 * 1024;

export interface ProcessSpec {
  /** Network namespace (`ip netns` name). */
  readonly ns: string;
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly workingDir: string;
  /** Argv prefix that sets up the mounts and execs the rest (volumes.ts mountPrefix). */
  readonly mountPrefix: readonly string[];
  readonly user:
    | { readonly uid: number; readonly gid: number; readonly groups: readonly number[] }
    | undefined;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly at: Date;
}

/** The argv after `ip netns exec <ns>`: mounts, cwd, user, death signal, then the program. */
export function wrappedArgv(spec: Omit<ProcessSpec, 'ns' | 'env'>): string[] {
  const userArgs =
    spec.user === undefined
      ? []
      : [
          `--reuid=${spec.user.uid}`,
          `--regid=${spec.user.gid}`,
          spec.user.groups.length > 0 ? `--groups=${spec.user.groups.join(',')}` : '--clear-groups',
        ];
  return [
    ...spec.mountPrefix,
    // cd after the mounts: the working directory may be inside one.
    '/bin/sh',
    '-c',
    'cd "$0" || exit 96; shift; exec "$@"',
    spec.workingDir,
    'unused',
    'setpriv',
    ...userArgs,
    '--pdeathsig=KILL',
    '--',
    ...spec.argv,
  ];
}

export class ContainerOutput {
  private tail = '';
  append(chunk: Buffer | string): void {
    this.tail = (this.tail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
  }
  text(): string {
    return this.tail;
  }
}

/** A started process; `exited` resolves once, when it is gone. */
export class ContainerProcess {
  readonly child: ChildProcess;
  readonly startedAt = new Date();
  readonly exited: Promise<Exit>;
  private done = false;

  constructor(spec: ProcessSpec, output: ContainerOutput) {
    this.child = spawn('ip', ['netns', 'exec', spec.ns, ...wrappedArgv(spec)], {
      env: { ...spec.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: stop() signals the group, reaching whatever the program forked.
      detached: true,
    });
    this.child.stdout?.on('data', (c: Buffer) => output.append(c));
    this.child.stderr?.on('data', (c: Buffer) => output.append(c));
    this.exited = new Promise((resolve) => {
      this.child.once('error', (err) => {
        output.append(`\n[lab-kubelet] spawn failed: ${err.message}\n`);
        this.done = true;
        resolve({ code: 128, signal: null, at: new Date() });
      });
      this.child.once('exit', (code, signal) => {
        this.done = true;
        resolve({ code, signal, at: new Date() });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.done;
  }

  /** Signals the whole process group. */
  signal(sig: NodeJS.Signals): void {
    if (this.done || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch {
      // Already gone.
    }
  }

  /** SIGKILL to the group even after the leader exited: its forks may live on. */
  killGroup(): void {
    if (this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // Nothing left.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  async stop(graceMs: number): Promise<Exit> {
    this.signal('SIGTERM');
    const timer = setTimeout(() => this.signal('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
      // Whatever the program left in its group (a fork that ignored SIGTERM) goes too.
      this.killGroup();
    }
  }
}
