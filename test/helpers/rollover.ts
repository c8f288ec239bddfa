/**
 * The swarm-key rollover proof shared by test/integration/swarm-key-rollover.test.ts (127.0.0.1)
 * and test/lab/swarm-key-rollover.test.ts (through NAT routers): a client that opens a steady
 * stream of new connections and tags each failure with the rollover step it happened in, the
 * restart-in-turn of one member behind a readiness gate, and the check that no connection uses
 * the old key any more.
 */
import { eventually, type NodeProcess } from './node-process.js';

/** The key files a member runs with: `{ current: A, next: B }` in round 1, `{ current: B }` in round 2. */
export interface Keys {
  current: string;
  next?: string;
}

/** What the rollover is doing while a member restarts: the prefix of every failure then. */
export const restartPhase = (name: string, keys: Keys): string =>
  `restart ${name} with ${keys.next === undefined ? 'one key' : 'two keys'}`;

/** One new connection through the forward; true when its echo came back intact. */
export type RoundTrip = () => Promise<boolean>;

export interface SteadyClientLimits {
  /** At most this many connections in all. */
  maxConnections: number;
  /** Opens none after this long from start(). */
  maxMs: number;
  /** Each connection fails after this long without its echo. */
  perConnectionMs?: number;
}

/** New connections through the forward, one after another, until stopped; every result kept. */
export class SteadyClient {
  ok = 0;
  readonly failures: string[] = [];
  /** What the rollover is doing now, so a failure says during which step it happened. */
  phase = 'start';
  private paused = false;
  private stopped = false;
  private running: Promise<void> | undefined;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly roundTrip: RoundTrip,
    private readonly limits: SteadyClientLimits,
  ) {}

  start(): void {
    this.running = this.loop(Date.now() + this.limits.maxMs);
  }

  private async loop(deadline: number): Promise<void> {
    const perConnectionMs = this.limits.perConnectionMs ?? 15_000;
    while (!this.stopped && this.ok + this.failures.length < this.limits.maxConnections) {
      if (Date.now() > deadline) {
        this.failures.push(`${this.phase}: the client ran out of time (${this.limits.maxMs} ms)`);
        return;
      }
      if (this.paused) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      let done!: () => void;
      this.idle = new Promise((r) => (done = r));
      const phase = this.phase;
      let timer: NodeJS.Timeout | undefined;
      try {
        const timeout = new Promise<boolean>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no echo within ${perConnectionMs} ms`)),
            perConnectionMs,
          );
        });
        if (await Promise.race([this.roundTrip(), timeout])) this.ok++;
        else this.failures.push(`${phase}: echo differs`);
      } catch (err) {
        this.failures.push(`${phase}: ${String(err)}`);
      } finally {
        clearTimeout(timer);
        done();
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Waits for the connection in flight, then opens none until resume(). */
  async pause(): Promise<void> {
    this.paused = true;
    await this.idle;
  }

  resume(): void {
    this.paused = false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }
}

/** One member of the rollover, as its test starts and stops it. */
export interface RollingMember {
  name: string;
  /** The client's forward is this member's listener: the client pauses while it restarts. */
  forwarder: boolean;
  stop(): Promise<unknown>;
  start(keys: Keys): Promise<void>;
}

/**
 * Stops one member (a graceful drain) and starts it again with `keys`, as a rolling update does.
 * The next member goes only once this one carries tunnels again: `gate` (if any), then 5 more
 * connections through the forward.
 */
export async function restartInTurn(
  client: SteadyClient,
  m: RollingMember,
  keys: Keys,
  gate?: () => Promise<void>,
): Promise<void> {
  client.phase = restartPhase(m.name, keys);
  if (m.forwarder) await client.pause();
  try {
    await m.stop();
    await m.start(keys);
  } finally {
    if (m.forwarder) client.resume();
  }
  try {
    await gate?.();
    const before = client.ok;
    await eventually(
      async () => (client.ok >= before + 5 ? true : undefined),
      30_000,
      `traffic after ${client.phase}`,
    );
  } catch (err) {
    // The connections that failed meanwhile say more than the gate that timed out.
    const failed = client.failures;
    throw new Error(
      `${String(err)}\n${failed.length} connections failed so far:\n${failed.slice(0, 10).join('\n')}`,
    );
  }
}

/**
 * After round 1: every member holds the next key, and (once connections are made again) none of
 * their connections uses the old one. Resolves when so; rejects naming what is left otherwise.
 */
export async function oldKeyGone(
  members: ReadonlyArray<{ name: string; proc?: Pick<NodeProcess, 'status'> }>,
  timeoutMs = 20_000,
): Promise<void> {
  await eventually(
    async () => {
      const left: string[] = [];
      for (const m of members) {
        const s = (await m.proc?.status())?.swarmKey;
        if (s?.next !== true || s.connections.current > 0) left.push(`${m.name} ${JSON.stringify(s)}`);
      }
      if (left.length > 0) throw new Error(left.join('; '));
      return true;
    },
    timeoutMs,
    'no connection on the old key',
  );
}
