/** Test ports come from below the kernel's ephemeral range, free, and not twice in a row. */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { expect, it } from '@jest/globals';
import { freePort } from '../../helpers/ports.js';

const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);

it('hands out ports below the ephemeral range that a server can then listen on', async () => {
  const ports = [await freePort(), await freePort(), await freePort()];
  expect(new Set(ports).size).toBe(3);
  for (const port of ports) {
    expect(port).toBeGreaterThanOrEqual(10_000);
    expect(port).toBeLessThan(ephemeralLow);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((r) => server.close(r));
  }
});
