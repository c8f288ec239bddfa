/**
 * A keyed work queue like client-go's: a key waits at most once however often it is added, is
 * never processed by two workers at once (added while processing, it runs again after), and a
 * failing key is retried with per-key exponential backoff until it succeeds. Keys are
 * `namespace/name`.
 */

export interface WorkQueueInit {
  /** First retry delay of a failing key. @default 200 ms */
  minRetryMs?: number;
  /** Longest retry delay. @default 60 s */
  maxRetryMs?: number;
  /** Called when the number of waiting keys changes (a gauge). */
  onDepth?: (depth: number) => void;
}

export type Handler = (key: string) => Promise<{ requeueAfterMs?: number } | undefined>;

export class WorkQueue {
  private readonly waiting = new Set<string>();
  private readonly processing = new Set<string>();
  /** Added while processing: goes back in line when its run ends. */
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; due: number }>();
  private readonly minRetryMs: number;
  private readonly maxRetryMs: number;
  private wake?: () => void;
  private shuttingDown = false;

  constructor(private readonly init: WorkQueueInit = {}) {
    this.minRetryMs = init.minRetryMs ?? 200;
    this.maxRetryMs = init.maxRetryMs ?? 60_000;
  }

  get depth(): number {
    return this.waiting.size;
  }

  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.waiting.has(key)) return;
    this.waiting.add(key);
    this.init.onDepth?.(this.waiting.size);
    this.wake?.();
  }

  /** Adds `key` after `ms`; of several delayed adds of one key, the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const due = Date.now() + ms;
    const pending = this.timers.get(key);
    if (pending !== undefined) {
      if (pending.due <= due) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.add(key);
    }, ms);
    this.timers.set(key, { timer, due });
  }

  /** Runs `handler` on `workers` concurrent loops until `shutDown()`. */
  run(handler: Handler, workers = 2): Promise<void> {
    return Promise.all(Array.from({ length: workers }, () => this.worker(handler))).then(() => {});
  }

  shutDown(): void {
    this.shuttingDown = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
    this.waiting.clear();
    this.wake?.();
  }

  private async next(): Promise<string | undefined> {
    for (;;) {
      if (this.shuttingDown) return undefined;
      const first = this.waiting.values().next();
      if (!first.done) {
        this.waiting.delete(first.value);
        this.init.onDepth?.(this.waiting.size);
        return first.value;
      }
      await new Promise<void>((resolve) => {
        const prev = this.wake;
        this.wake = () => {
          this.wake = undefined;
          prev?.();
          resolve();
        };
      });
    }
  }

  private async worker(handler: Handler): Promise<void> {
    for (;;) {
      const key = await this.next();
      if (key === undefined) return;
      this.processing.add(key);
      let retryAfter: number | undefined;
      try {
        const r = await handler(key);
        this.failures.delete(key);
        retryAfter = r?.requeueAfterMs;
      } catch {
        // The handler logs and counts its own errors; the queue only schedules the retry.
        const n = (this.failures.get(key) ?? 0) + 1;
        this.failures.set(key, n);
        retryAfter = Math.min(this.minRetryMs * 2 ** (n - 1), this.maxRetryMs);
      } finally {
        this.processing.delete(key);
      }
      if (this.dirty.delete(key)) this.add(key);
      else if (retryAfter !== undefined) this.addAfter(key, retryAfter);
    }
  }
}
