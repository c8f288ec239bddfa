/** Running commands and reading the output of long-lived processes, every wait bounded in time. */
import { type ChildProcess, spawn } from 'node:child_process';
import { LabCommandError, LabProcessExitedError, LabTimeoutError } from './errors.js';

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Exit code, or null when the process was killed by a signal (e.g. the timeout). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ExecOptions {
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  /** Killed with SIGKILL after this long. Default 30 s. */
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
}

export const DEFAULT_EXEC_TIMEOUT_MS = 30_000;

/** Run a command to completion. Never rejects for a non-zero exit; see `runOk`. */
export function run(
  command: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: options.env ?? process.env,
      timeout: options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      resolve({
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
        code,
        signal,
      });
    });
    // A process that exits without reading its stdin makes the write fail with EPIPE: its exit
    // code tells the real story, so the stdin error is not the one to report.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Run a command and throw `LabCommandError` unless it exits 0. */
export async function runOk(
  command: string,
  args: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const result = await run(command, args, options);
  if (result.code !== 0) {
    throw new LabCommandError(command, args, result.code, result.stderr || result.stdout);
  }
  return result;
}

/**
 * Collects a child's stdout (or stderr) as lines from the moment it is made, so a test can wait for
 * "listening" and later for another line without losing anything printed in between.
 */
export class LineReader {
  readonly lines: string[] = [];
  private cursor = 0;
  private partial = '';
  private exited = false;
  private exitCode: number | null = null;
  private exitSignal: string | null = null;
  private readonly waiters = new Set<() => void>();

  constructor(
    child: ChildProcess,
    private readonly label: string,
    stream: 'stdout' | 'stderr' = 'stdout',
  ) {
    const source = stream === 'stdout' ? child.stdout : child.stderr;
    source?.setEncoding('utf8');
    source?.on('data', (chunk: string) => {
      const parts = (this.partial + chunk).split('\n');
      this.partial = parts.pop() ?? '';
      this.lines.push(...parts);
      this.wake();
    });
    child.on('exit', (code, signal) => {
      this.exited = true;
      this.exitCode = code;
      this.exitSignal = signal;
      if (this.partial) {
        this.lines.push(this.partial);
        this.partial = '';
      }
      this.wake();
    });
  }

  private wake(): void {
    for (const waiter of this.waiters) {
      waiter();
    }
  }

  /** All output so far, for error messages. */
  text(): string {
    return [...this.lines, this.partial].join('\n');
  }

  /**
   * The next line (after the last one returned) that satisfies `match`. Rejects with
   * `LabTimeoutError` after `timeoutMs`, or `LabProcessExitedError` if the process exits first.
   */
  next(match: (line: string) => boolean, timeoutMs: number, what = 'a matching line'): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        while (this.cursor < this.lines.length) {
          const line = this.lines[this.cursor] ?? '';
          this.cursor++;
          if (match(line)) {
            finish();
            resolve(line);
            return true;
          }
        }
        if (this.exited) {
          finish();
          reject(
            new LabProcessExitedError(`${this.label} (${what})`, this.exitCode, this.exitSignal, this.text()),
          );
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new LabTimeoutError(`${this.label}: ${what}`, timeoutMs, this.text().slice(-2000)));
      }, timeoutMs);
      const waiter = (): void => {
        check();
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      if (!check()) {
        this.waiters.add(waiter);
      }
    });
  }

  /** The next line that parses as JSON and satisfies `match`. */
  async nextJson<T>(match: (value: T) => boolean, timeoutMs: number, what = 'a JSON line'): Promise<T> {
    const line = await this.next(
      (l) => {
        const parsed = tryParseJson(l);
        return parsed !== undefined && match(parsed as T);
      },
      timeoutMs,
      what,
    );
    return JSON.parse(line) as T;
  }
}

function tryParseJson(line: string): unknown {
  if (!line.startsWith('{')) {
    return undefined;
  }
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

/** Resolves when the child has exited (at once if it already has), or false after `timeoutMs`. */
export function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}
