/**
 * Over 300 lines on purpose: one reservation state machine per relay (make, renew, make again, report).
 *
 * `relayClient()`: keeps circuit relay v2 reservations on the network's relays.
 *
 * js-libp2p makes a reservation for a `/p2p/<relay>/p2p-circuit` listen address once and never
 * again after the relay connection drops (js-libp2p issue 3601); a failed dial also puts the relay
 * on a filter the store clears only while it is discovering relays. So this service makes the
 * first reservation on a relay by listening on its circuit address (the circuit listener then
 * owns the announced addresses and follows the relay's later reservations), and every later one
 * by asking the circuit transport's reservation store for a `configured` reservation again, which
 * that listener picks up. It does so only while the bootstrap keeper holds a connection to the
 * relay, never with a dial of its own: a second dial from the same listening port to the same relay
 * collides on the 4-tuple, falls back to an ephemeral port, and the relay's view of that port
 * looks like a symmetric NAT; and a failed dial inside the store would filter the relay out for
 * good. Reservations are topped up with capped backoff, on another relay while one is gone.
 */

import type { Connection, Libp2p, PeerId, Startable } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { isCircuitAddress } from '../../contracts/relayed.js';
import { type ReservationStore, reservationStore } from '../patches/circuit-relay.js';
import { RelayClientSetupError, RelayNotConnectedError } from './errors.js';

/** `promise`, or a rejection when `signal` aborts first (the store's queue may hold a job). */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

export interface RelayClientInit {
  /** Relay multiaddrs, each ending in /p2p/<peer id> (the network's bootstrap/relay peers). */
  relays: readonly string[];
  /** Reservations to hold at once, on different relays. @default 2 */
  maxReservations?: number;
  /** @default 500 */
  minBackoffMs?: number;
  /** @default 5000 */
  maxBackoffMs?: number;
  /** How often held reservations are checked against the wanted count. @default 2000 */
  checkIntervalMs?: number;
  /** One dial + reservation, ms. @default 5000 */
  reserveTimeoutMs?: number;
}

/** What this service needs of libp2p's components (structural: no internal package import). */
export interface RelayClientComponents {
  transportManager: { getTransports(): unknown[]; listen(addrs: Multiaddr[]): Promise<void> };
  connectionManager: {
    openConnection(peer: PeerId, options?: { signal?: AbortSignal }): Promise<Connection>;
    getConnections(peer?: PeerId): Connection[];
  };
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>;
}

export type RelayReservationState = 'active' | 'reserving' | 'backoff' | 'standby';

export interface RelayReservationStatus {
  relay: string;
  state: RelayReservationState;
  addresses: string[];
  failures: number;
  /** Last failure, for /status: what to look at when a relay does not take reservations. */
  error: string | null;
}

export type RelayClientEvent =
  | { type: 'reserved'; relay: string; addresses: string[]; afterMs: number | null }
  | { type: 'lost'; relay: string }
  | { type: 'failed'; relay: string; attempt: number; error: string };

export interface RelayClient {
  subscribe(listener: (event: RelayClientEvent) => void): () => void;
  status(): RelayReservationStatus[];
  /** Reservations held now. */
  active(): number;
}

/** The parts of the circuit transport's ReservationStore this service drives (checked at run time). */
type StoreLike = ReservationStore;

interface Relay {
  id: string;
  peerId: PeerId;
  /** The relay's circuit listen address: /<relay multiaddr>/p2p-circuit. */
  circuit: Multiaddr;
  /** A circuit listener for this relay exists (it re-applies later reservations itself). */
  listening: boolean;
  state: RelayReservationState;
  addresses: Multiaddr[];
  failures: number;
  error: string | null;
  retryAt: number;
  lostAt: number | null;
}

function findStore(transports: unknown[]): StoreLike {
  const transport = transports.find(
    (t) =>
      typeof t === 'object' &&
      t !== null &&
      Reflect.get(t, Symbol.toStringTag) === '@libp2p/circuit-relay-v2-transport',
  );
  if (transport === undefined)
    throw new RelayClientSetupError('no circuit relay transport: add circuitRelayTransport() to the node');
  return reservationStore(transport);
}

/** The relay peer ID of a reservation-store event, if the event has one. */
function relayOf(evt: Event): string | undefined {
  const detail: unknown = (evt as CustomEvent<unknown>).detail;
  if (typeof detail !== 'object' || detail === null) return undefined;
  const relay: unknown = Reflect.get(detail, 'relay');
  return relay === undefined || relay === null ? undefined : String(relay);
}

/** The relay's circuit addresses from a created-reservation event. */
function addrsOf(evt: Event): Multiaddr[] {
  const detail: unknown = (evt as CustomEvent<unknown>).detail;
  const bufs: unknown =
    typeof detail === 'object' && detail !== null
      ? Reflect.get(Reflect.get(Reflect.get(detail, 'details') ?? {}, 'reservation') ?? {}, 'addrs')
      : undefined;
  if (!Array.isArray(bufs)) return [];
  const out: Multiaddr[] = [];
  for (const b of bufs) {
    if (!(b instanceof Uint8Array)) continue;
    try {
      out.push(multiaddr(b).encapsulate('/p2p-circuit'));
    } catch {
      // An address this node cannot parse is one it cannot announce either.
    }
  }
  return out;
}

class RelayClientService implements RelayClient, Startable {
  readonly [Symbol.toStringTag] = '@peertunnel/relay-client';
  private readonly relays: Relay[] = [];
  private readonly listeners = new Set<(event: RelayClientEvent) => void>();
  private store?: StoreLike;
  private timer?: NodeJS.Timeout;
  private started = false;
  private readonly maxReservations: number;
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly checkIntervalMs: number;
  private readonly reserveTimeoutMs: number;

  constructor(
    private readonly components: RelayClientComponents,
    init: RelayClientInit,
  ) {
    this.maxReservations = init.maxReservations ?? 2;
    this.minBackoffMs = init.minBackoffMs ?? 500;
    this.maxBackoffMs = init.maxBackoffMs ?? 5_000;
    this.checkIntervalMs = init.checkIntervalMs ?? 2_000;
    this.reserveTimeoutMs = init.reserveTimeoutMs ?? 5_000;
    const seen = new Set<string>();
    for (const a of init.relays) {
      const addr = multiaddr(a);
      const id = addr.getComponents().findLast((c) => c.name === 'p2p')?.value;
      if (id === undefined || seen.has(id)) continue;
      seen.add(id);
      this.relays.push({
        id,
        peerId: peerIdFromString(id),
        circuit: addr.encapsulate('/p2p-circuit'),
        listening: false,
        state: 'standby',
        addresses: [],
        failures: 0,
        error: null,
        retryAt: 0,
        lostAt: null,
      });
    }
    this.onCreated = this.onCreated.bind(this);
    this.onRemoved = this.onRemoved.bind(this);
    this.onConnectionOpen = this.onConnectionOpen.bind(this);
  }

  isStarted(): boolean {
    return this.started;
  }

  start(): void {
    this.started = true;
  }

  /** After libp2p started: transports are listening, so reservations can be made. */
  afterStart(): void {
    if (this.relays.length === 0 || this.maxReservations === 0) return;
    this.store = findStore(this.components.transportManager.getTransports());
    this.store.addEventListener('relay:created-reservation', this.onCreated);
    this.store.addEventListener('relay:removed', this.onRemoved);
    this.components.events.addEventListener('connection:open', this.onConnectionOpen);
    this.check();
  }

  stop(): void {
    this.started = false;
    clearTimeout(this.timer);
    this.store?.removeEventListener('relay:created-reservation', this.onCreated);
    this.store?.removeEventListener('relay:removed', this.onRemoved);
    this.components.events.removeEventListener('connection:open', this.onConnectionOpen);
  }

  /** A relay just became reachable: try it now instead of at the end of its backoff. */
  private onConnectionOpen(evt: CustomEvent<Connection>): void {
    const r = this.relays.find((x) => x.id === evt.detail.remotePeer.toString());
    if (r === undefined || r.state !== 'backoff') return;
    r.retryAt = 0;
    queueMicrotask(() => this.check());
  }

  private connected(r: Relay): boolean {
    return this.components.connectionManager
      .getConnections(r.peerId)
      .some((c) => c.status === 'open' && !isCircuitAddress(c.remoteAddr));
  }

  subscribe(listener: (event: RelayClientEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  status(): RelayReservationStatus[] {
    return this.relays.map((r) => ({
      relay: r.id,
      state: r.state,
      addresses: r.addresses.map((a) => a.toString()),
      failures: r.failures,
      error: r.error,
    }));
  }

  active(): number {
    return this.relays.filter((r) => r.state === 'active').length;
  }

  private emit(event: RelayClientEvent): void {
    for (const l of this.listeners) {
      try {
        l(event);
      } catch {
        // A listener's failure is its own.
      }
    }
  }

  /** Tops reservations up to the wanted count, then checks again later. */
  private check(): void {
    clearTimeout(this.timer);
    if (!this.started) return;
    const now = Date.now();
    const wanted = Math.min(this.maxReservations, this.relays.length);
    let held = this.relays.filter((r) => r.state === 'active' || r.state === 'reserving').length;
    // In config order: the first relays are preferred, later ones stand in while those are down.
    // One reservation at a time: the store queues them one by one anyway, and a queued one would
    // spend its timeout waiting.
    let inFlight = this.relays.some((r) => r.state === 'reserving');
    for (const r of this.relays) {
      if (held >= wanted || inFlight) break;
      if (r.state !== 'standby' && r.state !== 'backoff') continue;
      if (r.retryAt > now) continue;
      held++;
      inFlight = true;
      this.reserve(r);
    }
    const soonest = Math.min(
      this.checkIntervalMs,
      ...this.relays.filter((r) => r.state === 'backoff').map((r) => Math.max(50, r.retryAt - now)),
    );
    this.timer = setTimeout(() => this.check(), soonest);
    this.timer.unref();
  }

  private reserve(r: Relay): void {
    const store = this.store;
    if (store === undefined) return;
    r.state = 'reserving';
    const signal = AbortSignal.timeout(this.reserveTimeoutMs);
    Promise.resolve()
      .then(async () => {
        if (!this.connected(r)) throw new RelayNotConnectedError(r.id);
        // Returns the keeper's connection: the store's own dial never runs (see above).
        await this.components.connectionManager.openConnection(r.peerId, { signal });
        if (!r.listening) {
          await raceSignal(this.components.transportManager.listen([r.circuit]), signal);
          r.listening = true;
        } else if (!store.hasReservation(r.peerId)) {
          await raceSignal(store.addRelay(r.peerId, 'configured'), signal);
        }
        // Addresses and state are set by onCreated; an existing reservation is simply kept.
        if (r.state === 'reserving') r.state = 'active';
        this.check();
      })
      .catch((err: unknown) => {
        r.failures++;
        r.error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        r.state = 'backoff';
        r.retryAt =
          Date.now() + Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(r.failures - 1, 10));
        this.emit({ type: 'failed', relay: r.id, attempt: r.failures, error: r.error });
        this.check();
      });
  }

  private onCreated(evt: Event): void {
    const id = relayOf(evt);
    const r = this.relays.find((x) => x.id === id);
    if (r === undefined) return;
    // The circuit listener announces these; they are kept here for /status.
    const addresses = addrsOf(evt);
    const first = r.state !== 'active';
    r.addresses = addresses;
    r.state = 'active';
    r.failures = 0;
    r.error = null;
    if (first) {
      const afterMs = r.lostAt === null ? null : Date.now() - r.lostAt;
      r.lostAt = null;
      this.emit({ type: 'reserved', relay: r.id, addresses: addresses.map((a) => a.toString()), afterMs });
    }
  }

  private onRemoved(evt: Event): void {
    const id = relayOf(evt);
    const r = this.relays.find((x) => x.id === id);
    if (r === undefined) return;
    r.addresses = [];
    if (r.state === 'active') {
      r.lostAt = Date.now();
      this.emit({ type: 'lost', relay: r.id });
    }
    r.state = 'backoff';
    r.retryAt = Date.now() + this.minBackoffMs;
    // Right away: another relay can stand in while this one comes back.
    queueMicrotask(() => this.check());
  }
}

/** A libp2p service: `services: { relayClient: relayClient({ relays }) }`. */
export function relayClient(init: RelayClientInit): (components: RelayClientComponents) => RelayClient {
  return (components) => new RelayClientService(components, init);
}
