/**
 * Over 300 lines on purpose: one state machine (find, map, renew, map again, unmap) read whole.
 *
 * The port mapper's moving part: one background loop that finds a gateway, maps, renews at
 * half-life, and maps again (with backoff) when the mapping is lost; stop() removes the mapping
 * from the gateway before the protocol client is closed.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection } from '@libp2p/interface';
import { multiaddr } from '@multiformats/multiaddr';
import { isRelayedConnection } from '../../contracts/relayed.js';
import { AddressPolicy } from '../nat/address-policy.js';
import type { MappedPort, MappingClient, MappingClients, PortMappingProtocol } from './clients.js';
import { PortMappingError, PortMappingUnavailableError } from './errors.js';
import { localAddressFor, readDefaultGateway } from './gateway.js';
import {
  DEFAULT_DISCOVERY_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_UNMAP_TIMEOUT_MS,
  type Lease,
  leaseExpiry,
  listenPortFor,
  nextRenewalAt,
  normalizeLeaseSeconds,
  remapBackoffMs,
  viaPortMapping,
} from './plan.js';
import type {
  PortMapper,
  PortMapperComponents,
  PortMapperInit,
  PortMappingState,
  PortMappingStatus,
} from './port-mapper.js';

const PROTOCOLS: readonly PortMappingProtocol[] = ['upnp', 'natpmp'];

/** A mapping the gateway holds for us. */
interface Held extends MappedPort {
  readonly protocol: PortMappingProtocol;
  readonly gateway: string;
  readonly externalIp: string;
  readonly lease: Lease;
  /** `/ip4/<externalIp>/tcp/<externalPort>` */
  readonly address: string;
}

export class DefaultPortMapper implements PortMapper {
  private readonly c: PortMapperComponents;
  private readonly protocols: PortMappingProtocol[];
  private readonly gateway: string | undefined;
  private readonly leaseSeconds: number;
  private readonly discoveryTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly unmapTimeoutMs: number;
  private readonly policy: AddressPolicy;
  /** Given (tests), or the library's, imported on first use: a node with port mapping off never loads its XML/SOAP stack. */
  private clients: MappingClients | undefined;
  private readonly now: () => number;
  private readonly log: PortMapperComponents['logger'];

  private state: PortMappingState;
  private controller: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private client: MappingClient | undefined;
  /** Asked of `client` and maybe granted, not yet answered: what stop() removes if no answer came. */
  private pending: MappedPort | undefined;
  private held: Held | undefined;
  private renewals = 0;
  private lastError: string | undefined;
  private readonly failed = new Set<PortMappingProtocol>();

  constructor(components: PortMapperComponents, init: PortMapperInit) {
    this.c = components;
    this.protocols = PROTOCOLS.filter((p) => (p === 'upnp' ? init.upnp === true : init.natPmp === true));
    this.gateway = init.gateway;
    this.leaseSeconds = normalizeLeaseSeconds(init.leaseSeconds);
    this.discoveryTimeoutMs = init.discoveryTimeoutMs ?? DEFAULT_DISCOVERY_TIMEOUT_MS;
    this.requestTimeoutMs = init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.unmapTimeoutMs = init.unmapTimeoutMs ?? DEFAULT_UNMAP_TIMEOUT_MS;
    this.policy = new AddressPolicy(init.publicRanges ?? []);
    this.clients = components.clients;
    this.now = components.now ?? Date.now;
    this.log = components.logger.child({ area: 'port_mapping' });
    this.state = this.protocols.length === 0 ? 'disabled' : 'searching';
  }

  async start(): Promise<void> {
    if (this.protocols.length === 0 || this.controller !== undefined) return;
    const controller = new AbortController();
    this.controller = controller;
    this.unsubscribe = this.c.onConnection((connection) => this.onConnection(connection));
    this.setState('searching');
    this.log.info(
      { event: 'port_mapping_searching', protocols: this.protocols },
      'looking for a NAT gateway',
    );
    this.loop = this.run(controller.signal).catch((err: unknown) => {
      // run() handles its own failures; anything here is a bug, but must not crash the node.
      this.log.error({ event: 'port_mapping_crashed', err }, 'port mapper stopped unexpectedly');
    });
  }

  async stop(): Promise<void> {
    const controller = this.controller;
    if (controller === undefined) return;
    controller.abort();
    await this.loop;
    this.unsubscribe?.();
    const client = this.client;
    const held = this.held;
    const target: MappedPort | undefined =
      held === undefined
        ? this.pending
        : {
            internalHost: held.internalHost,
            internalPort: held.internalPort,
            externalPort: held.externalPort,
          };
    if (client !== undefined && target !== undefined) {
      // Before the client is closed: the library's own stop() would not remove it (see clients).
      try {
        await client.unmap(target, AbortSignal.timeout(this.unmapTimeoutMs));
        this.count(client.protocol, 'unmap', 'ok');
        this.log.info(
          {
            event: 'port_mapping_removed',
            protocol: client.protocol,
            gateway: client.gateway,
            external: this.held?.address,
          },
          'port mapping removed',
        );
      } catch (err) {
        this.count(client.protocol, 'unmap', 'error');
        this.log.warn(
          { event: 'port_mapping_remove_failed', protocol: client.protocol, gateway: client.gateway, err },
          'could not remove the port mapping; it ends with its lease',
        );
      }
    }
    if (this.held !== undefined) this.withdraw(this.held);
    await client?.close();
    this.client = undefined;
    this.pending = undefined;
    this.held = undefined;
    this.failed.clear();
    this.setState('stopped');
  }

  status(): PortMappingStatus {
    const h = this.held;
    return {
      enabled: [...this.protocols],
      state: this.state,
      ...(h === undefined
        ? {}
        : {
            protocol: h.protocol,
            gateway: h.gateway,
            internal: `${h.internalHost}:${h.internalPort}`,
            external: h.address,
            expires: new Date(leaseExpiry(h.lease)).toISOString(),
          }),
      renewals: this.renewals,
      ...(this.lastError === undefined ? {} : { error: this.lastError }),
    };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      try {
        await this.establish(signal);
        failures = 0;
        // Returns when the lease ran out without a renewal: map again at once.
        await this.hold(signal);
        continue;
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        this.onFailure(err, failures);
      }
      try {
        await sleep(remapBackoffMs(failures), undefined, { signal });
      } catch {
        return;
      }
    }
  }

  private async establish(signal: AbortSignal): Promise<void> {
    const errors: PortMappingError[] = [];
    for (const protocol of this.protocols) {
      let client: MappingClient | undefined;
      try {
        client = await this.open(protocol, signal);
        this.client = client;
        const internalHost = await (this.c.localAddressFor ?? localAddressFor)(client.gateway);
        if (internalHost === undefined)
          throw new PortMappingError(
            protocol,
            'no_local_address',
            `no local IPv4 address reaches ${client.gateway}`,
          );
        const internalPort = listenPortFor(this.transportAddrs(), internalHost);
        if (internalPort === undefined)
          throw new PortMappingError(
            protocol,
            'not_listening',
            `the node does not listen on TCP at ${internalHost}`,
          );
        const want: MappedPort = { internalHost, internalPort, externalPort: internalPort };
        this.pending = want;
        const granted = await client.map({
          ...want,
          leaseSeconds: this.leaseSeconds,
          signal: this.request(signal),
        });
        this.pending = undefined;
        this.count(protocol, 'map', 'ok');
        this.failed.delete(protocol);
        this.lastError = undefined;
        this.renewals = 0;
        this.publish({
          protocol,
          gateway: client.gateway,
          internalHost,
          internalPort,
          externalIp: granted.externalIp,
          externalPort: granted.externalPort,
          lease: { grantedAt: this.now(), leaseSeconds: granted.leaseSeconds },
          address: `/ip4/${granted.externalIp}/tcp/${granted.externalPort}`,
        });
        return;
      } catch (err) {
        if (signal.aborted) {
          // stop() removes what this.client may have mapped; a client it does not know of is closed here.
          if (client !== undefined && client !== this.client) await client.close();
          throw err;
        }
        if (client !== undefined) {
          this.count(protocol, 'map', 'error');
          this.pending = undefined;
          this.client = undefined;
          await client.close();
        }
        this.failed.add(protocol);
        errors.push(
          err instanceof PortMappingError
            ? err
            : new PortMappingError(protocol, 'bad_response', String(err), { cause: err }),
        );
      }
    }
    throw new PortMappingUnavailableError(errors);
  }

  private async open(protocol: PortMappingProtocol, signal: AbortSignal): Promise<MappingClient> {
    this.clients ??= (await import('./clients.js')).libraryClients;
    if (protocol === 'upnp')
      return this.clients.upnp({ gateway: this.gateway, timeoutMs: this.discoveryTimeoutMs, signal });
    const gateway = this.gateway ?? (await (this.c.defaultGateway ?? readDefaultGateway)());
    if (gateway === undefined)
      throw new PortMappingError(
        'natpmp',
        'no_gateway',
        'nat.gateway is not set and there is no IPv4 default route',
      );
    return this.clients.natpmp(gateway);
  }

  /** Renews at half-life until stopped (throws the abort) or the lease runs out (returns). */
  private async hold(signal: AbortSignal): Promise<void> {
    let failures = 0;
    for (;;) {
      const held = this.held;
      const client = this.client;
      if (held === undefined || client === undefined) return;
      const at = nextRenewalAt(held.lease, this.now(), failures);
      if (at === undefined) {
        this.lose(held, client);
        return;
      }
      await sleep(Math.max(0, at - this.now()), undefined, { signal });
      try {
        const granted = await client.map({
          internalHost: held.internalHost,
          internalPort: held.internalPort,
          externalPort: held.externalPort,
          leaseSeconds: this.leaseSeconds,
          signal: this.request(signal),
        });
        failures = 0;
        this.renewals++;
        this.lastError = undefined;
        this.count(held.protocol, 'renew', 'ok');
        const next: Held = {
          ...held,
          externalIp: granted.externalIp,
          externalPort: granted.externalPort,
          lease: { grantedAt: this.now(), leaseSeconds: granted.leaseSeconds },
          address: `/ip4/${granted.externalIp}/tcp/${granted.externalPort}`,
        };
        if (next.address !== held.address) {
          // The gateway's external address changed (a new DHCP lease), or it moved our port.
          this.withdraw(held);
          this.log.info(
            {
              event: 'port_mapping_changed',
              protocol: held.protocol,
              before: held.address,
              external: next.address,
            },
            'port mapping moved',
          );
        }
        this.publish(next, next.address === held.address);
      } catch (err) {
        if (signal.aborted) throw err;
        failures++;
        this.count(held.protocol, 'renew', 'error');
        this.lastError = err instanceof Error ? err.message : String(err);
        this.log.warn(
          {
            event: 'port_mapping_renew_failed',
            protocol: held.protocol,
            attempt: failures,
            expires: new Date(leaseExpiry(held.lease)).toISOString(),
            err,
          },
          'could not renew the port mapping',
        );
      }
    }
  }

  /** Adds the external address to what libp2p announces, confirmed for the lease's lifetime. */
  private publish(held: Held, renewal = false): void {
    const am = this.c.addressManager;
    if (!renewal)
      am.addPublicAddressMapping(
        held.internalHost,
        held.internalPort,
        held.externalIp,
        held.externalPort,
        'tcp',
      );
    // A mapping made by the gateway itself needs no AutoNAT round (AutoNAT wants confirmations
    // from 4 different /8s, which a private network rarely has). It stays confirmed as long as the lease.
    am.confirmObservedAddr(multiaddr(held.address), {
      type: 'ip-mapping',
      ttl: Math.max(1, leaseExpiry(held.lease) - this.now()),
    });
    this.held = held;
    this.setState('mapped');
    const fields = {
      protocol: held.protocol,
      gateway: held.gateway,
      internal: `${held.internalHost}:${held.internalPort}`,
      external: held.address,
      leaseSeconds: held.lease.leaseSeconds,
      expires: new Date(leaseExpiry(held.lease)).toISOString(),
    };
    if (renewal) this.log.debug({ event: 'port_mapping_renewed', ...fields }, 'port mapping renewed');
    else this.log.info({ event: 'port_mapping_created', ...fields }, 'port mapped on the gateway');
  }

  private withdraw(held: Held): void {
    this.c.addressManager.removePublicAddressMapping(
      held.internalHost,
      held.internalPort,
      held.externalIp,
      held.externalPort,
      'tcp',
    );
  }

  private lose(held: Held, client: MappingClient): void {
    this.withdraw(held);
    this.held = undefined;
    this.client = undefined;
    this.failed.add(held.protocol);
    this.setState('searching');
    this.log.warn(
      { event: 'port_mapping_lost', protocol: held.protocol, external: held.address, error: this.lastError },
      'port mapping expired without renewal; mapping again',
    );
    client.close().catch(() => undefined);
  }

  private onFailure(err: unknown, failures: number): void {
    const errors = err instanceof PortMappingUnavailableError ? err.errors : [];
    this.lastError = err instanceof Error ? err.message : String(err);
    this.setState('failed');
    this.log.warn(
      {
        event: 'port_mapping_failed',
        attempt: failures,
        reasons: errors.map((e) => `${e.protocol}:${e.reason}`),
        retryInMs: remapBackoffMs(failures),
        err,
      },
      'no port mapping',
    );
  }

  private onConnection(connection: Connection): void {
    const remote = connection.remoteAddr.toString();
    const facts = {
      direction: connection.direction,
      relayed: isRelayedConnection(connection),
      remoteIp: AddressPolicy.ipOf(remote),
      alreadyMarked: this.c.paths.pathOf(connection) !== 'direct',
    };
    if (!viaPortMapping(facts, this.held, (ip) => this.policy.isPublic(ip))) return;
    this.c.paths.mark(connection, 'port_mapped');
    this.log.debug(
      { event: 'port_mapping_inbound', peer: connection.remotePeer.toString(), remoteAddr: remote },
      'connection came in through the port mapping',
    );
  }

  private transportAddrs(): string[] {
    return this.c.addressManager
      .getAddressesWithMetadata()
      .filter((a) => a.type === 'transport')
      .map((a) => a.multiaddr.toString());
  }

  private request(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, AbortSignal.timeout(this.requestTimeoutMs)]);
  }

  private count(
    protocol: PortMappingProtocol,
    operation: 'map' | 'renew' | 'unmap',
    result: 'ok' | 'error',
  ): void {
    this.c.metrics?.portMappingOperations.inc({ protocol, operation, result });
  }

  private setState(state: PortMappingState): void {
    this.state = state;
    const gauge = this.c.metrics?.portMappings;
    if (gauge === undefined) return;
    for (const p of PROTOCOLS) {
      const active = state === 'mapped' && this.held?.protocol === p;
      gauge.set({ protocol: p, state: 'active' }, active ? 1 : 0);
      gauge.set({ protocol: p, state: 'failed' }, !active && this.failed.has(p) ? 1 : 0);
    }
  }
}
