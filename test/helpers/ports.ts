/**
 * Ports a test must name before something listens on them (a child process's config, a server
 * flag). A port the kernel handed out for `listen(0)` and that was freed again lies in the
 * ephemeral range (net.ipv4.ip_local_port_range), where the next outgoing connection of any
 * process may take it before our listener does: CI saw `listen EADDRINUSE` that way. So these come
 * from below that range, where the kernel never picks a source port, from a slice of their own per
 * jest worker (or per process outside jest), and each is checked free by binding it first.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The lowest port handed out; below are well-known and registered services a host may run. */
const FLOOR = 10_000;
/** Slices of the range below the ephemeral ports: one per jest worker (or process). */
const SLICES = 8;

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > FLOOR + SLICES * 100 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

const sliceSize = Math.floor((ephemeralLow() - FLOOR) / SLICES);
const worker = Number(process.env.JEST_WORKER_ID);
const slice = Number.isInteger(worker) && worker > 0 ? (worker - 1) % SLICES : process.pid % SLICES;
const sliceStart = FLOOR + slice * sliceSize;
// A random start: a test file run before this one in the same worker may still hold its first ports.
let next = Math.floor(Math.random() * sliceSize);

function bindable(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port on `host` (127.0.0.1 by default) that nothing listens on now and the kernel will not hand out. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let tried = 0; tried < sliceSize; tried++) {
    const port = sliceStart + (next++ % sliceSize);
    if (await bindable(port, host)) return port;
  }
  throw new Error(`no free port in ${sliceStart}-${sliceStart + sliceSize - 1}`);
}
