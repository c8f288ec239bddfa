/**
 * Bounds on what DHT peers can make a node store and dial, through kad-dht's public options:
 * - provider records: the DHT keeps them in the libp2p datastore under /dht/provider/<key>/<peer>;
 *   this datastore refuses a record beyond MAX_RECORDS_PER_PEER for one peer, or beyond
 *   MAX_RECORDS in all (kad-dht then drops that ADD_PROVIDER), and counts each refusal;
 * - addresses: every peer info the DHT takes in or gives out keeps only addresses the node's
 *   address policy lets it dial (dhtAddressFilter), at most MAX_ADDRS_PER_PEER of them.
 */
import type { PeerInfo } from '@libp2p/interface';
import type { Multiaddr } from '@multiformats/multiaddr';
import { MemoryDatastore } from 'datastore-core/memory';
import type { Key } from 'interface-datastore';
import type { AddressPolicy } from '../nat/address-policy.js';

/** Services one member may announce at one DHT server: far more than a pod exposes (64). */
export const MAX_RECORDS_PER_PEER = 256;
/** Provider records a DHT server keeps in all. */
export const MAX_RECORDS = 65_536;
/** Addresses kept per peer from a DHT message. */
export const MAX_ADDRS_PER_PEER = 16;

const PROVIDER_PREFIX = '/dht/provider/';

export type DhtRefusal = 'records_per_peer' | 'records_total';

export class BoundedDatastore extends MemoryDatastore {
  private readonly perPeer = new Map<string, number>();
  private records = 0;
  private readonly listeners = new Set<(reason: DhtRefusal, peer: string) => void>();

  /** Calls `listener` on each refused record; returns the unsubscribe. */
  onRefused(listener: (reason: DhtRefusal, peer: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  override put(key: Key, val: Uint8Array): Key | Promise<Key> {
    const k = key.toString();
    const peer = k.startsWith(PROVIDER_PREFIX) ? k.slice(k.lastIndexOf('/') + 1) : undefined;
    if (peer !== undefined && !super.has(key)) {
      const held = this.perPeer.get(peer) ?? 0;
      const reason: DhtRefusal | undefined =
        held >= MAX_RECORDS_PER_PEER
          ? 'records_per_peer'
          : this.records >= MAX_RECORDS
            ? 'records_total'
            : undefined;
      if (reason !== undefined) {
        for (const l of this.listeners) l(reason, peer);
        throw new Error(`DHT record refused: ${reason}`);
      }
      this.perPeer.set(peer, held + 1);
      this.records++;
    }
    return super.put(key, val);
  }

  override delete(key: Key): void {
    const k = key.toString();
    if (k.startsWith(PROVIDER_PREFIX) && super.has(key)) {
      const peer = k.slice(k.lastIndexOf('/') + 1);
      const held = this.perPeer.get(peer) ?? 0;
      if (held <= 1) this.perPeer.delete(peer);
      else this.perPeer.set(peer, held - 1);
      this.records--;
    }
    super.delete(key);
  }
}

/** The IP of a multiaddr's first component, or undefined (dns, p2p-circuit alone). */
function ipOf(ma: Multiaddr): string | undefined {
  const c = ma.getComponents()[0];
  return c !== undefined && (c.name === 'ip4' || c.name === 'ip6') ? c.value : undefined;
}

/**
 * kad-dht's peerInfoMapper: only addresses the policy lets this node dial (never unspecified,
 * link-local, multicast; loopback only where the node itself listens on loopback), bounded.
 */
export function dhtAddressFilter(
  policy: AddressPolicy,
  allowLoopback: boolean,
): (peer: PeerInfo) => PeerInfo {
  return (peer) => ({
    ...peer,
    multiaddrs: peer.multiaddrs
      .filter((ma) => {
        const ip = ipOf(ma);
        return ip === undefined || policy.isDialable(ip, allowLoopback);
      })
      .slice(0, MAX_ADDRS_PER_PEER),
  });
}
