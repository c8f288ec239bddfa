/**
 * Over 300 lines on purpose: announcing, lookups and the identify feed share one per-name state.
 *
 * Service records in the DHT: exposers announce (provide) each name and keep re-announcing it;
 * forwarders look providers up, keep them in a pool per name, and refresh in the background.
 *
 * A name's DHT key is a CIDv1 (raw codec) of sha2-256("peertunnel:service:<name>"), so any DHT
 * client, kubo included, can compute it (`peertunnel cid <name>` prints it).
 *
 * Identify also feeds the pools: a connected peer that speaks /x/peertunnel/<name>/1.0.0 is a
 * provider without waiting for the DHT, which makes first contact and fail-over fast.
 *
 * Addresses go stale: a NATed exposer whose relay died reserves on another relay and gets a new
 * circuit address. It provides again as soon as its addresses change (a provide carries them to
 * the DHT servers closest to the key), and a forwarder whose dial failed asks for fresh ones
 * (`freshAddresses`) before giving the provider up.
 */
import type { Libp2p, PeerId, PeerInfo } from '@libp2p/interface';
import type { KadDHT } from '@libp2p/kad-dht';
import { peerIdFromString } from '@libp2p/peer-id';
import { type Multiaddr, multiaddr } from '@multiformats/multiaddr';
import { CID } from 'multiformats/cid';
import * as raw from 'multiformats/codecs/raw';
import { sha256 } from 'multiformats/hashes/sha2';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { Logger } from '../node/logger.js';
import { ProviderPool } from '../tunnel/provider-pool.js';

export const SERVICE_PROTOCOL_PREFIX = '/x/peertunnel/';

/** The stream protocol of a service: kubo's `ipfs p2p` convention. */
export function serviceProtocol(name: string): string {
  return `${SERVICE_PROTOCOL_PREFIX}${name}/1.0.0`;
}

/**
 * The same with a first byte from the exposer saying whether its target accepted (TARGET_*), so a
 * forwarder learns of a broken provider before it hands the stream to its client. Kubo's
 * `ipfs p2p` and older nodes speak only serviceProtocol: forwarders offer this one first.
 */
export function serviceProtocolAck(name: string): string {
  return `${SERVICE_PROTOCOL_PREFIX}${name}/1.1.0`;
}

/** The exposer's first byte on serviceProtocolAck: its target accepted; the tunnel follows. */
export const TARGET_CONNECTED = 0;
/** The exposer's target refused or did not answer; the stream closes. */
export const TARGET_UNREACHABLE = 1;
/** The exposer serves as many streams as it may (from this peer or all); the stream closes. */
export const TARGET_BUSY = 2;
/** The exposer's trust refuses this peer for the name (sidecar/trust/); the stream closes. */
export const TARGET_FORBIDDEN = 3;

export async function serviceKey(name: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(`peertunnel:service:${name}`));
  return CID.createV1(raw.code, digest);
}

export interface ServiceDirectoryInit {
  /** How often exposed names are provided again. @default 30000 */
  reprovideIntervalMs?: number;
  /** Retry interval while a provide has not yet succeeded (no DHT peers yet). @default 1000 */
  provideRetryMs?: number;
  /** How often forwarded names are looked up again. @default 15000 */
  lookupIntervalMs?: number;
  /** Give a lookup this long. @default 8000 */
  lookupTimeoutMs?: number;
  /** Forget a provider the DHT has not confirmed for this long. @default 120000 */
  providerTtlMs?: number;
}

export interface ServiceDirectoryComponents {
  libp2p: Pick<
    Libp2p,
    | 'peerId'
    | 'contentRouting'
    | 'peerStore'
    | 'addEventListener'
    | 'removeEventListener'
    | 'getConnections'
    | 'getMultiaddrs'
  >;
  /** The DHT itself, for provides: only its events tell whether a record reached any peer. */
  dht: Pick<KadDHT, 'provide'>;
  metrics: SidecarMetrics;
  logger: Logger;
  /** False for a peer refused for good as a provider of the name (sidecar/trust/): never pooled. */
  admits?: (service: string, peer: string) => boolean;
}

/** What the directory tells the forwards. */
export type DirectoryEvent = {
  type: 'providers_found';
  /** The forwarded name that has a new provider (from the DHT or identify). */
  service: string;
};

interface Watched {
  name: string;
  protocol: string;
  key: CID;
  pool: ProviderPool;
  lookup?: Promise<void>;
  waiters: Set<() => void>;
  /** The wait before the next lookup while no provider is known; doubles up to EMPTY_RETRY_MAX_MS. */
  emptyRetryMs: number;
  /**
   * Peers whose identify stopped listing the name (their target refuses), and when: their DHT
   * records outlive that, so lookups do not bring them back until identify lists it again.
   */
  withdrawn: Map<string, number>;
  /**
   * Peers whose identify listed the name. Only they can withdraw it by identify: kubo's
   * `ipfs p2p listen` serves a name its identify never lists, and is found through the DHT alone.
   */
  listed: Set<string>;
}

/**
 * A forward with no provider asks again soon: at first after 100 ms, since at start the first
 * lookup usually runs before any DHT peer is connected and finds nothing.
 */
const EMPTY_RETRY_MIN_MS = 100;
const EMPTY_RETRY_MAX_MS = 2_000;

/** How long a withdrawn provider's DHT records are ignored; peers tracked at most. */
const WITHDRAWN_MS = 5 * 60_000;
const MAX_WITHDRAWN = 1_024;

export class ServiceDirectory {
  private readonly c: ServiceDirectoryComponents;
  private readonly init: Required<ServiceDirectoryInit>;
  private readonly watched = new Map<string, Watched>();
  private readonly announced = new Map<string, { key: CID; ok: boolean; on: boolean }>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly listeners = new Set<(e: DirectoryEvent) => void>();
  private stopped = false;
  /** This node's addresses when it last started providing (a change means: provide again). */
  private providedAddrs?: string;

  constructor(components: ServiceDirectoryComponents, init: ServiceDirectoryInit = {}) {
    this.c = components;
    this.init = {
      reprovideIntervalMs: init.reprovideIntervalMs ?? 30_000,
      provideRetryMs: init.provideRetryMs ?? 1_000,
      lookupIntervalMs: init.lookupIntervalMs ?? 15_000,
      lookupTimeoutMs: init.lookupTimeoutMs ?? 8_000,
      providerTtlMs: init.providerTtlMs ?? 120_000,
    };
    this.onIdentify = this.onIdentify.bind(this);
    this.onSelfUpdate = this.onSelfUpdate.bind(this);
  }

  async start(announce: string[], watch: string[]): Promise<void> {
    for (const name of announce)
      this.announced.set(name, { key: await serviceKey(name), ok: false, on: true });
    for (const name of watch) {
      this.watched.set(name, {
        name,
        protocol: serviceProtocol(name),
        key: await serviceKey(name),
        pool: new ProviderPool({ ttlMs: this.init.providerTtlMs }),
        waiters: new Set(),
        emptyRetryMs: EMPTY_RETRY_MIN_MS,
        withdrawn: new Map(),
        listed: new Set(),
      });
      this.c.metrics.providers.set({ service: name }, 0);
    }
    this.c.libp2p.addEventListener('peer:identify', this.onIdentify);
    if (this.announced.size > 0) {
      this.c.libp2p.addEventListener('self:peer:update', this.onSelfUpdate);
      this.provideLoop();
    }
    for (const w of this.watched.values()) this.lookupLoop(w);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.c.libp2p.removeEventListener('peer:identify', this.onIdentify);
    this.c.libp2p.removeEventListener('self:peer:update', this.onSelfUpdate);
    for (const w of this.watched.values()) for (const wake of w.waiters) wake();
  }

  /** Calls `listener` on each event; returns the unsubscribe. */
  subscribe(listener: (e: DirectoryEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  pool(name: string): ProviderPool | undefined {
    return this.watched.get(name)?.pool;
  }

  /** True once every exposed name in service was provided at least once. */
  get announcedAll(): boolean {
    for (const a of this.announced.values()) if (a.on && !a.ok) return false;
    return true;
  }

  /**
   * Stops (a target that refuses) or resumes announcing an exposed name. Records already in the
   * DHT age out; peers learn sooner from identify that the node stopped serving the name.
   */
  setAnnounced(name: string, on: boolean): void {
    const a = this.announced.get(name);
    if (a === undefined || a.on === on) return;
    a.on = on;
    a.ok = false;
    if (on) void Promise.resolve(this.providing).then(() => this.provideAll());
  }

  /**
   * Resolves when the name has at least one provider, or after `timeoutMs`. Starts a lookup
   * when none is running, so a forward with an empty pool asks the network right away.
   */
  async waitForProvider(name: string, timeoutMs: number): Promise<boolean> {
    const w = this.watched.get(name);
    if (w === undefined) return false;
    if (w.pool.size > 0) return true;
    void this.lookup(w);
    await this.until(w, () => w.pool.size > 0, timeoutMs);
    return w.pool.size > 0;
  }

  /**
   * Looks `name` up again and resolves with the providers that are not in `known`, as soon as one
   * appears, or empty once the lookup ended (or `timeoutMs` passed) without one: what a forwarder
   * asks when every provider it knew failed, before it gives a client up.
   */
  async waitForNewProvider(name: string, known: ReadonlySet<string>, timeoutMs: number): Promise<string[]> {
    const w = this.watched.get(name);
    if (w === undefined) return [];
    const fresh = () =>
      w.pool
        .list()
        .map((p) => p.peer)
        .filter((peer) => !known.has(peer));
    if (fresh().length === 0) await this.until(w, () => fresh().length > 0, timeoutMs, this.lookup(w));
    return fresh();
  }

  /** Resolves once `ready()` holds after a change to the pool, after `timeoutMs`, or when `ended` settles. */
  private until(
    w: Watched,
    ready: () => boolean,
    timeoutMs: number,
    ended?: Promise<unknown>,
  ): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        w.waiters.delete(wake);
        resolve();
      }
      // A stopping directory wakes every waiter: none waits out its timeout.
      const wake = () => {
        if (ready() || this.stopped) done();
      };
      w.waiters.add(wake);
      void ended?.finally(done);
    });
  }

  /**
   * After a failed dial to `peer`: looks `name` up again (bounded by `timeoutMs`) and returns the
   * peer's addresses that lookup brought and the node did not have before (say, a circuit address
   * through another relay), each ending in /p2p/<peer>, in the order worth dialling them again.
   */
  async freshAddresses(name: string, peer: string, timeoutMs: number): Promise<Multiaddr[]> {
    const w = this.watched.get(name);
    if (w === undefined) return [];
    const before = await this.addressesOf(peer);
    // The first DHT server's answer is enough: stop waiting as soon as something new arrived.
    let done = false;
    void this.lookup(w).finally(() => {
      done = true;
    });
    const deadline = Date.now() + timeoutMs;
    let after = before;
    for (;;) {
      after = await this.addressesOf(peer);
      if (done || Date.now() >= deadline || [...after].some((a) => !before.has(a))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    // Loopback ones last: a remote peer's 127.0.0.1 is this node itself unless all run on one host.
    const loopback = (a: string) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/');
    return [...after]
      .filter((a) => !before.has(a))
      .sort((a, b) => Number(loopback(a)) - Number(loopback(b)))
      .map((a) => multiaddr(`${a}/p2p/${peer}`));
  }

  /** The peer's addresses in the peer store, without a trailing /p2p/<peer>. */
  private async addressesOf(peer: string): Promise<Set<string>> {
    const suffix = `/p2p/${peer}`;
    try {
      const p = await this.c.libp2p.peerStore.get(peerIdFromString(peer));
      return new Set(
        p.addresses.map((a) => {
          const s = a.multiaddr.toString();
          return s.endsWith(suffix) ? s.slice(0, -suffix.length) : s;
        }),
      );
    } catch {
      return new Set();
    }
  }

  /** Own addresses changed (a relay reservation made or lost): provide again right away. */
  private onSelfUpdate(): void {
    if (this.providedAddrs === undefined || this.ownAddrs() === this.providedAddrs) return;
    this.c.logger.debug({ event: 'addresses_changed' }, 'own addresses changed, providing again');
    // A provide under way may have started with the old addresses: provide after it.
    void Promise.resolve(this.providing).then(() => this.provideAll());
  }

  private ownAddrs(): string {
    return this.c.libp2p
      .getMultiaddrs()
      .map((a) => a.toString())
      .sort()
      .join(' ');
  }

  private schedule(fn: () => void, ms: number): void {
    if (this.stopped) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    t.unref();
    this.timers.add(t);
  }

  private addProviders(w: Watched, found: string[]): void {
    const admits = this.c.admits;
    const peers = admits === undefined ? found : found.filter((p) => admits(w.name, p));
    if (peers.length === 0) return;
    const now = Date.now();
    if (w.pool.seen(peers, now)) {
      this.c.logger.info(
        { event: 'providers_changed', service: w.name, providers: w.pool.size },
        'provider found',
      );
      for (const listener of this.listeners) listener({ type: 'providers_found', service: w.name });
    }
    this.c.metrics.providers.set({ service: w.name }, w.pool.size);
    for (const wake of w.waiters) wake();
  }

  private onIdentify(evt: CustomEvent<{ peerId: PeerId; protocols: string[] }>): void {
    const { peerId, protocols } = evt.detail;
    const peer = peerId.toString();
    for (const w of this.watched.values()) {
      if (protocols.includes(w.protocol)) {
        w.withdrawn.delete(peer);
        if (w.listed.size >= MAX_WITHDRAWN) w.listed.clear();
        w.listed.add(peer);
        this.addProviders(w, [peer]);
      } else if (w.listed.delete(peer) && w.pool.has(peer)) this.withdraw(w, peer);
    }
    // A newly identified DHT peer makes providing possible: do not wait for the retry timer.
    if ([...this.announced.values()].some((a) => a.on && !a.ok)) void this.provideAll();
    // ...and finding providers: a forward with none asks at once (the first lookup at start ran
    // before any peer was connected). A lookup already running is joined, not repeated.
    for (const w of this.watched.values()) if (w.pool.size === 0 && !this.stopped) void this.lookup(w);
  }

  /** A provider told (identify) that it no longer serves the name: it leaves the pool now. */
  private withdraw(w: Watched, peer: string): void {
    w.pool.remove(peer);
    if (w.withdrawn.size >= MAX_WITHDRAWN) w.withdrawn.clear();
    w.withdrawn.set(peer, Date.now());
    this.c.metrics.providers.set({ service: w.name }, w.pool.size);
    this.c.logger.info(
      { event: 'providers_changed', service: w.name, providers: w.pool.size, withdrawn: peer },
      'provider stopped serving the name',
    );
  }

  private provideLoop(): void {
    void this.provideAll().then((allOk) => {
      this.schedule(
        () => this.provideLoop(),
        allOk ? this.init.reprovideIntervalMs : this.init.provideRetryMs,
      );
    });
  }

  private providing?: Promise<boolean>;

  private provideAll(): Promise<boolean> {
    this.providing ??= (async () => {
      let allOk = true;
      this.providedAddrs = this.ownAddrs();
      for (const [name, a] of this.announced) {
        if (!a.on) continue;
        try {
          // A provide with no DHT peer "succeeds" locally; only a peer's answer means others can find us.
          let reached = 0;
          for await (const evt of this.c.dht.provide(a.key, {
            signal: AbortSignal.timeout(this.init.lookupTimeoutMs),
          })) {
            if (evt.name === 'PEER_RESPONSE' && evt.messageName === 'ADD_PROVIDER') reached++;
          }
          if (reached === 0) throw new Error('no DHT peer took the provider record');
          if (!a.ok)
            this.c.logger.info({ event: 'service_announced', service: name }, 'service announced in the DHT');
          a.ok = true;
          this.c.metrics.dhtProvides.inc({ result: 'ok' });
        } catch (err) {
          allOk = false;
          this.c.metrics.dhtProvides.inc({ result: 'error' });
          this.c.logger.debug({ event: 'provide_failed', service: name, err }, 'provide failed, will retry');
        }
      }
      return allOk;
    })().finally(() => {
      this.providing = undefined;
    });
    return this.providing;
  }

  private lookupLoop(w: Watched): void {
    void this.lookup(w).then(() => {
      const connected = (peer: string) =>
        this.c.libp2p.getConnections().some((c) => c.remotePeer.toString() === peer);
      const dropped = w.pool.expire(Date.now(), connected);
      if (dropped.length > 0) {
        this.c.logger.info(
          { event: 'providers_changed', service: w.name, providers: w.pool.size },
          'stale providers dropped',
        );
        this.c.metrics.providers.set({ service: w.name }, w.pool.size);
      }
      // Ask again soon while nothing is known; otherwise at the normal pace.
      if (w.pool.size > 0) {
        w.emptyRetryMs = EMPTY_RETRY_MIN_MS;
        this.schedule(() => this.lookupLoop(w), this.init.lookupIntervalMs);
      } else {
        this.schedule(() => this.lookupLoop(w), w.emptyRetryMs);
        w.emptyRetryMs = Math.min(EMPTY_RETRY_MAX_MS, w.emptyRetryMs * 2);
      }
    });
  }

  private lookup(w: Watched): Promise<void> {
    w.lookup ??= (async () => {
      const started = performance.now();
      const self = this.c.libp2p.peerId.toString();
      let found = 0;
      let result: 'found' | 'empty' | 'error' = 'empty';
      try {
        for await (const info of this.c.libp2p.contentRouting.findProviders(w.key, {
          signal: AbortSignal.timeout(this.init.lookupTimeoutMs),
        })) {
          const peer = info.id.toString();
          if (peer === self) continue;
          const since = w.withdrawn.get(peer);
          if (since !== undefined && Date.now() - since < WITHDRAWN_MS) continue;
          w.withdrawn.delete(peer);
          await this.remember(info);
          found++;
          this.addProviders(w, [peer]);
        }
        if (found > 0) result = 'found';
      } catch (err) {
        result = found > 0 ? 'found' : 'error';
        if (found === 0)
          this.c.logger.debug({ event: 'lookup_failed', service: w.name, err }, 'provider lookup failed');
      }
      this.c.metrics.dhtLookups.inc({ result });
      this.c.metrics.dhtLookupSeconds.observe({ result }, (performance.now() - started) / 1000);
    })().finally(() => {
      w.lookup = undefined;
    });
    return w.lookup;
  }

  private async remember(info: PeerInfo): Promise<void> {
    if (info.multiaddrs.length === 0) return;
    try {
      await this.c.libp2p.peerStore.merge(info.id, { multiaddrs: info.multiaddrs });
    } catch (err) {
      this.c.logger.debug({ event: 'peerstore_merge_failed', err }, 'could not store provider addresses');
    }
  }
}
