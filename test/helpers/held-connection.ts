/**
 * TCP connections through a forward, as revocation tests need them: one held open that can be
 * pinged and tells when it closes, and one that shows whether the tunnel refused it (closed
 * before any byte came back).
 */
import type { Socket } from 'node:net';
import { connectTo } from './traffic.js';

export interface HeldConnection {
  /** Settles when the connection closes. */
  closed: Promise<void>;
  /** Sends a line and waits (up to 5 s) for it back. */
  ping(text: string): Promise<boolean>;
  destroy(): void;
}

/** An open echo connection. */
export async function held(port: number): Promise<HeldConnection> {
  const s: Socket = await connectTo(port);
  let buf = '';
  s.on('data', (d: Buffer) => {
    buf += d.toString();
  });
  s.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  return {
    closed,
    async ping(text: string): Promise<boolean> {
      buf = '';
      s.write(`${text}\n`);
      const deadline = Date.now() + 5_000;
      while (!buf.includes(`${text}\n`) && Date.now() < deadline && !s.destroyed)
        await new Promise((r) => setTimeout(r, 20));
      return buf === `${text}\n`;
    },
    destroy: () => s.destroy(),
  };
}

/** Whether a new connection closes without an echo: the tunnel refused it. */
export async function refused(port: number): Promise<boolean> {
  const s = await connectTo(port);
  return new Promise((resolve) => {
    let got = 0;
    s.on('data', (d: Buffer) => {
      got += d.length;
      s.destroy();
    });
    s.on('error', () => undefined);
    s.once('close', () => resolve(got === 0));
    s.write('hello\n');
  });
}

/** Rejects after `ms` with `message`: races a promise against a deadline. */
export function deadline(ms: number, message: string): Promise<never> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(message)), ms).unref());
}
