/**
 * Lab port mapper: drives @achingbrain/nat-port-mapper (the library the product uses) from inside a
 * pod host, against the lab's miniupnpd router.
 *
 * Usage: node portmap.ts <upnp|pmp> --internal-host IP --port N [--external-port N] [--gateway IP]
 *                        [--timeout MS]
 *   upnp: discovers the gateway by SSDP on the LAN (UPnP-IGD v2, AddAnyPortMapping).
 *   pmp:  NAT-PMP to --gateway (the router's LAN address).
 * Prints JSON lines: {"event":"mapped",...mapping} once the mapping exists; then reads commands on
 * stdin: `unmap` -> unmaps, prints {"event":"unmapped"}; `stop` or end of input -> stops the
 * gateway client (which removes what is still mapped), prints {"event":"stopped"} and exits.
 * On failure prints {"event":"error","name":...,"message":...} and exits 1.
 */
import { createInterface } from 'node:readline';
import { type Gateway, pmpNat, upnpNat } from '@achingbrain/nat-port-mapper';

const [mode = '', ...rest] = process.argv.slice(2);
const options = new Map<string, string>();
for (let i = 0; i < rest.length; i += 2) {
  options.set(rest[i] ?? '', rest[i + 1] ?? '');
}
const internalHost = options.get('--internal-host') ?? '';
const port = Number(options.get('--port'));
const externalPort = options.has('--external-port') ? Number(options.get('--external-port')) : undefined;
const timeoutMs = Number(options.get('--timeout') ?? '15000');

function emit(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

async function findGateway(): Promise<Gateway> {
  if (mode === 'pmp') {
    // autoRefresh off for the whole client, not just map(): the library's unmap() is a map() with
    // ttl 0 that would otherwise default to auto-refresh and re-send itself in a tight loop.
    return pmpNat(options.get('--gateway') ?? '', { autoRefresh: false });
  }
  if (mode === 'upnp') {
    const client = upnpNat({ autoRefresh: false });
    // Search every second: one M-SEARCH can be lost, and the bound keeps this from running forever.
    for await (const gateway of client.findGateways({
      signal: AbortSignal.timeout(timeoutMs),
      searchInterval: 1_000,
    })) {
      return gateway;
    }
    throw new Error(`no UPnP gateway found within ${timeoutMs} ms`);
  }
  throw new Error(`mode must be upnp or pmp, got ${JSON.stringify(mode)}`);
}

try {
  const gateway = await findGateway();
  const mapping = await gateway.map(port, internalHost, {
    protocol: 'tcp',
    externalPort,
    autoRefresh: false,
    description: 'peertunnel-lab',
    signal: AbortSignal.timeout(timeoutMs),
  });
  emit({ event: 'mapped', ...mapping });
  let holding = true;
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    const command = line.trim();
    if (command === 'unmap') {
      await gateway.unmap(port, { signal: AbortSignal.timeout(timeoutMs) });
      holding = false;
      emit({ event: 'unmapped' });
    } else if (command === 'stop') {
      break;
    }
  }
  if (holding && mode === 'pmp') {
    // The library's NAT-PMP stop() removes only auto-refreshed mappings (and then fails with
    // "Socket is already bound", as it closes its state before unmapping): unmap ourselves.
    await gateway.unmap(port, { signal: AbortSignal.timeout(timeoutMs) });
  }
  await gateway.stop({ signal: AbortSignal.timeout(timeoutMs) });
  emit({ event: 'stopped' });
  process.exit(0);
} catch (err) {
  const e = err instanceof Error ? err : new Error(String(err));
  emit({ event: 'error', name: e.name, message: e.message });
  process.exit(1);
}
