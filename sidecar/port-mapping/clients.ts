/**
 * Over 300 lines on purpose: two gateway protocols behind one interface, each library workaround beside its call.
 *
 * The two gateway protocols behind one small interface, both driven through
 * `@achingbrain/nat-port-mapper` 4.0.5, with our own workarounds for its bugs (each marked
 * "library bug" below; all confirmed against miniupnpd in the NAT lab, see test/lab/README.md):
 *
 * - UPnP-IGD: the library finds the gateway (SSDP) and carries the SOAP calls, but its `map()`
 *   forces a lease of at least 3600 s and its `unmap()` deletes external port = internal port, wrong
 *   whenever the gateway picked another external port. So we send AddAnyPortMapping,
 *   DeletePortMapping and GetExternalIPAddress ourselves through the library's device object.
 * - NAT-PMP: `map()` / `unmap()` / `externalIp()` of the library's client, created with
 *   `autoRefresh: false` (we renew leases ourselves), lifetimes passed in seconds, our own
 *   retransmission, and the client replaced after any request without an answer.
 */
import { EventEmitter } from 'node:events';
import { isIPv4 } from 'node:net';
import { type Gateway, pmpNat, upnpNat } from '@achingbrain/nat-port-mapper';
import { PortMappingError, type PortMappingFailure } from './errors.js';
import { PMP_ATTEMPT_TIMEOUTS_MS } from './plan.js';

export type PortMappingProtocol = 'upnp' | 'natpmp';

export interface MappingRequest {
  readonly internalHost: string;
  readonly internalPort: number;
  /** Asked for; the gateway may grant another one. */
  readonly externalPort: number;
  readonly leaseSeconds: number;
  readonly signal: AbortSignal;
}

export interface GrantedMapping {
  readonly externalIp: string;
  readonly externalPort: number;
  /** As granted, in seconds (as asked when the protocol client cannot tell). */
  readonly leaseSeconds: number;
}

export interface MappedPort {
  readonly internalHost: string;
  readonly internalPort: number;
  readonly externalPort: number;
}

/** One gateway, one protocol. `map()` also renews: asking again for the same ports extends it. */
export interface MappingClient {
  readonly protocol: PortMappingProtocol;
  /** The gateway's IP address. */
  readonly gateway: string;
  map(request: MappingRequest): Promise<GrantedMapping>;
  unmap(mapped: MappedPort, signal: AbortSignal): Promise<void>;
  /** Release sockets. Never removes mappings: call `unmap()` first. */
  close(): Promise<void>;
}

export interface UpnpDiscoveryOptions {
  /** Only this gateway (nat.gateway); the first IGD that answers otherwise. */
  readonly gateway?: string;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}

/** How the service gets clients; tests pass fakes. */
export interface MappingClients {
  upnp(options: UpnpDiscoveryOptions): Promise<MappingClient>;
  natpmp(gateway: string): MappingClient;
}

export const MAPPING_DESCRIPTION = 'peertunnel';
const WAN_IP_CONNECTION_2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';

type SoapArgs = Array<[string, string | number]>;

/** The library's UPnP device object: `run()` posts one SOAP action and returns the parsed Body. */
interface SoapDevice {
  run(
    serviceType: string,
    action: string,
    args: SoapArgs,
    options: { signal: AbortSignal },
  ): Promise<unknown>;
}

/**
 * The device inside the library's UPnP gateway object (an internal of 4.x, not in its types):
 * checked at runtime, so a library that changed shape is reported, not crashed on.
 */
export function soapDeviceOf(gateway: object): SoapDevice | undefined {
  if (!('gateway' in gateway)) return undefined;
  const device = gateway.gateway;
  if (typeof device !== 'object' || device === null || !('run' in device)) return undefined;
  const run = device.run;
  if (typeof run !== 'function') return undefined;
  return {
    run: (serviceType, action, args, options) =>
      Promise.resolve(run.call(device, serviceType, action, args, options) as unknown),
  };
}

/** `<action>Response.<field>` of a SOAP Body parsed by xml2js (keys carry a namespace prefix). */
export function soapField(body: unknown, action: string, field: string): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  for (const [key, value] of Object.entries(body)) {
    if (key !== `${action}Response` && !key.endsWith(`:${action}Response`)) continue;
    if (typeof value !== 'object' || value === null) return undefined;
    const got: unknown = (value as Record<string, unknown>)[field];
    return typeof got === 'string' || typeof got === 'number' ? String(got) : undefined;
  }
  return undefined;
}

function failureOf(err: unknown, signal: AbortSignal): PortMappingFailure {
  if (signal.aborted) return 'timeout';
  if (err instanceof Error && err.name === 'UPnPError') return 'refused';
  // NAT-PMP result codes arrive as err-code errors with a numeric code (2: refused, 4: no ports...).
  if (err instanceof Error && 'code' in err && typeof err.code === 'number') return 'refused';
  return 'bad_response';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function validPort(text: string | undefined): number | undefined {
  const n = Number(text);
  return Number.isInteger(n) && n > 0 && n < 65_536 ? n : undefined;
}

class UpnpClient implements MappingClient {
  readonly protocol = 'upnp';
  readonly gateway: string;
  constructor(
    private readonly library: Gateway,
    private readonly device: SoapDevice,
  ) {
    this.gateway = library.host;
  }

  private async call(action: string, args: SoapArgs, signal: AbortSignal): Promise<unknown> {
    try {
      return await this.device.run(WAN_IP_CONNECTION_2, action, args, { signal });
    } catch (err) {
      throw new PortMappingError('upnp', failureOf(err, signal), `${action}: ${messageOf(err)}`, {
        cause: err,
      });
    }
  }

  async map(request: MappingRequest): Promise<GrantedMapping> {
    // Library bug worked around: its map() sends max(ttl / 1000, 3600) s; we want short leases.
    const body = await this.call(
      'AddAnyPortMapping',
      [
        ['NewRemoteHost', ''],
        ['NewExternalPort', request.externalPort],
        ['NewProtocol', 'TCP'],
        ['NewInternalPort', request.internalPort],
        ['NewInternalClient', request.internalHost],
        ['NewEnabled', 1],
        ['NewPortMappingDescription', MAPPING_DESCRIPTION],
        ['NewLeaseDuration', request.leaseSeconds],
      ],
      request.signal,
    );
    // IGD v2 AddAnyPortMapping: the gateway picks another port when ours is taken.
    const externalPort = validPort(soapField(body, 'AddAnyPortMapping', 'NewReservedPort'));
    if (externalPort === undefined)
      throw new PortMappingError(
        'upnp',
        'bad_response',
        'AddAnyPortMapping: no NewReservedPort in the answer',
      );
    const ipBody = await this.call('GetExternalIPAddress', [], request.signal);
    const externalIp = soapField(ipBody, 'GetExternalIPAddress', 'NewExternalIPAddress') ?? '';
    if (!isIPv4(externalIp))
      throw new PortMappingError(
        'upnp',
        'bad_response',
        `GetExternalIPAddress: ${JSON.stringify(externalIp)}`,
      );
    return { externalIp, externalPort, leaseSeconds: request.leaseSeconds };
  }

  async unmap(mapped: MappedPort, signal: AbortSignal): Promise<void> {
    // Library bug worked around: its unmap() deletes NewExternalPort = <internal port>.
    await this.call(
      'DeletePortMapping',
      [
        ['NewRemoteHost', ''],
        ['NewExternalPort', mapped.externalPort],
        ['NewProtocol', 'TCP'],
      ],
      signal,
    );
  }

  async close(): Promise<void> {
    // It holds no mappings of its own (we never call its map()), so stop() only aborts its fetches.
    await this.library.stop().catch(() => undefined);
  }
}

async function discoverUpnp(options: UpnpDiscoveryOptions): Promise<MappingClient> {
  const client = upnpNat({ autoRefresh: false });
  const search = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]);
  // M-SEARCH every second: one datagram can be lost, and the timeout bounds the search.
  for await (const found of client.findGateways({ signal: search, searchInterval: 1_000 })) {
    if (found.family !== 'IPv4' || (options.gateway !== undefined && found.host !== options.gateway)) {
      await found.stop().catch(() => undefined);
      continue;
    }
    const device = soapDeviceOf(found);
    if (device === undefined) {
      await found.stop().catch(() => undefined);
      throw new PortMappingError(
        'upnp',
        'unsupported_library',
        '@achingbrain/nat-port-mapper changed shape: its gateway has no SOAP device (expected 4.x)',
      );
    }
    return new UpnpClient(found, device);
  }
  options.signal.throwIfAborted();
  const which =
    options.gateway === undefined ? 'no UPnP-IGD v2 gateway' : `gateway ${options.gateway} did not`;
  throw new PortMappingError('upnp', 'no_gateway', `${which} answered SSDP within ${options.timeoutMs} ms`);
}

class PmpClient implements MappingClient {
  readonly protocol = 'natpmp';
  private client: Gateway;
  private lastSocketError: Error | undefined;

  constructor(readonly gateway: string) {
    this.client = this.create();
  }

  private create(): Gateway {
    // Library bug worked around: its unmap() is a map() with ttl 0 that inherits the client's
    // autoRefresh (default true) and re-sends the removal forever. Off for the whole client.
    const client = pmpNat(this.gateway, { autoRefresh: false });
    // Its gateway is an EventEmitter that re-emits socket errors as 'error'; without a listener
    // Node would throw it and take the whole node down.
    if (client instanceof EventEmitter)
      client.on('error', (err: unknown) => {
        this.lastSocketError = err instanceof Error ? err : new Error(String(err));
      });
    return client;
  }

  private async replace(): Promise<void> {
    const old = this.client;
    this.client = this.create();
    await closePmp(old);
  }

  /**
   * One NAT-PMP exchange with retransmission. Library bug worked around: a request that gets no
   * answer stays at the head of its queue, marked active, and blocks every later request; so each
   * attempt that fails other than by a result code from the gateway gets a fresh client.
   */
  private async exchange<T>(
    what: string,
    op: (client: Gateway, signal: AbortSignal) => Promise<T>,
    signal: AbortSignal,
  ): Promise<T> {
    let last: unknown;
    for (const timeoutMs of PMP_ATTEMPT_TIMEOUTS_MS) {
      signal.throwIfAborted();
      const attempt = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
      try {
        return await op(this.client, attempt);
      } catch (err) {
        last = err;
        if (failureOf(err, attempt) === 'refused') {
          throw new PortMappingError('natpmp', 'refused', `${what}: ${messageOf(err)}`, { cause: err });
        }
        await this.replace();
      }
    }
    signal.throwIfAborted();
    const socket = this.lastSocketError === undefined ? '' : ` (socket: ${this.lastSocketError.message})`;
    throw new PortMappingError(
      'natpmp',
      'timeout',
      `${what}: no answer from ${this.gateway}:5351 after ${PMP_ATTEMPT_TIMEOUTS_MS.length} attempts${socket}`,
      { cause: last },
    );
  }

  async map(request: MappingRequest): Promise<GrantedMapping> {
    const mapped = await this.exchange(
      'map',
      (client, signal) =>
        client.map(request.internalPort, request.internalHost, {
          protocol: 'tcp',
          externalPort: request.externalPort,
          // Library bug worked around: `ttl` is documented in ms but written to the wire as the
          // lifetime in seconds, so we pass seconds.
          ttl: request.leaseSeconds,
          autoRefresh: false,
          description: MAPPING_DESCRIPTION,
          signal,
        }),
      request.signal,
    );
    // Asked separately: the library reports the internal host as the external one whenever the
    // internal address is not in its own list of private ranges.
    const externalIp = await this.exchange(
      'external address',
      (client, signal) => client.externalIp({ signal }),
      request.signal,
    );
    if (!isIPv4(externalIp) || externalIp === '0.0.0.0')
      throw new PortMappingError('natpmp', 'bad_response', `external address ${JSON.stringify(externalIp)}`);
    // The library drops the lifetime the gateway granted; we assume the one we asked for (renewal
    // at half-life leaves room for a gateway that grants somewhat less).
    return { externalIp, externalPort: mapped.externalPort, leaseSeconds: request.leaseSeconds };
  }

  async unmap(mapped: MappedPort, signal: AbortSignal): Promise<void> {
    // NAT-PMP deletes by internal port (RFC 6886 §3.4): right whatever external port was granted.
    await this.exchange('unmap', (client, s) => client.unmap(mapped.internalPort, { signal: s }), signal);
  }

  async close(): Promise<void> {
    await closePmp(this.client);
  }
}

/**
 * Library bug worked around: its stop() unmaps only auto-refreshed mappings and fails with "Socket
 * is already bound" when it has any. With autoRefresh off it has none, so stop() only closes the
 * socket (which throws if an error already closed it).
 */
async function closePmp(client: Gateway): Promise<void> {
  try {
    await client.stop();
  } catch {
    // already closed
  }
}

export const libraryClients: MappingClients = {
  upnp: discoverUpnp,
  natpmp: (gateway) => new PmpClient(gateway),
};
