/**
 * Notices when a file changes, by polling its status (a Kubernetes Secret or ConfigMap volume
 * replaces files by swapping a symlink, which file watches miss; a poll sees every kind of
 * replacement). The content is read only when the status changed, and only when small enough.
 */
import { readFile, stat } from 'node:fs/promises';

export interface FilePollInit {
  file: string;
  intervalMs: number;
  maxBytes: number;
  /** The content changed (or appeared). Errors thrown here are the caller's to log. */
  onChange(text: string): Promise<void> | void;
  /** The file could not be read, or is too large; called once per distinct problem. */
  onError(problem: string): void;
}

export class FilePoll {
  private timer?: NodeJS.Timeout;
  private lastStat = '';
  private lastText?: string;
  private lastProblem?: string;
  private stopped = false;

  constructor(private readonly init: FilePollInit) {}

  /** Starts polling; `text` is the content already read at start, if any. */
  start(text?: string): void {
    this.lastText = text;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.poll().finally(() => this.schedule()), this.init.intervalMs);
    this.timer.unref();
  }

  /** One look at the file; exported for tests through `pollNow`. */
  async pollNow(): Promise<void> {
    return this.poll();
  }

  private async poll(): Promise<void> {
    const { file, maxBytes } = this.init;
    let text: string;
    try {
      const s = await stat(file);
      const key = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
      if (key === this.lastStat) return;
      if (s.size > maxBytes) return this.problem(`${file} is ${s.size} bytes, more than ${maxBytes}`);
      text = await readFile(file, 'utf8');
      this.lastStat = key;
    } catch (err) {
      return this.problem(`cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    this.lastProblem = undefined;
    if (text === this.lastText) return;
    this.lastText = text;
    await this.init.onChange(text);
  }

  private problem(problem: string): void {
    if (problem === this.lastProblem) return;
    this.lastProblem = problem;
    this.lastStat = '';
    this.init.onError(problem);
  }
}
