/**
 * Spares the peer store libp2p's write for every tunnel stream.
 *
 * Why: libp2p 3 (connection.js, both `newStream` and `onIncomingStream`) merges
 * `{ protocols: [protocol] }` into the remote peer's record for every stream it negotiates, under
 * that peer's write lock: read and decode the record, merge, encode, write. A forwarder opens one
 * stream per TCP connection, all to the same exposer, so both ends pay that once per connection,
 * one connection at a time per peer. Profiled during the bench's new-connections measure, it was
 * about 15% of each node's CPU; without the repeats the bench made ~30% more connections per
 * second. After the first such merge the record already lists the protocol.
 *
 * So a repeat of exactly that call (one tunnel protocol, nothing else) for a (peer, protocol) seen
 * within `ttlMs` returns the record of the last real merge. Past `ttlMs` it merges again, which
 * keeps the record's update time fresh (the peer store expires records by it) and re-adds the
 * protocol should identify have replaced the list. Every other merge goes through untouched.
 */
import type { Peer, PeerData, PeerId, PeerStore } from '@libp2p/interface';

export interface ProtocolMergeCacheOptions {
  /** Which protocols' repeats to skip. */
  isCached: (protocol: string) => boolean;
  /** How long one real merge covers its repeats. @default 60000 */
  ttlMs?: number;
  /** Entries kept before expired ones are swept. @default 4096 */
  maxEntries?: number;
  /** Clock, for tests. @default Date.now */
  now?: () => number;
}

/** The single protocol of a merge that carries nothing else, or undefined. */
function onlyProtocol(data: PeerData): string | undefined {
  const keys = Object.keys(data);
  if (keys.length !== 1 || keys[0] !== 'protocols') return undefined;
  const protocols = data.protocols;
  return protocols?.length === 1 ? protocols[0] : undefined;
}

/** Wraps `peerStore.merge` in place (libp2p calls it on the same object). */
export function cacheProtocolMerges(peerStore: PeerStore, options: ProtocolMergeCacheOptions): void {
  const ttlMs = options.ttlMs ?? 60_000;
  const maxEntries = options.maxEntries ?? 4_096;
  const now = options.now ?? Date.now;
  const merge = peerStore.merge.bind(peerStore);
  const seen = new Map<string, { peer: Peer; until: number }>();

  peerStore.merge = async (id: PeerId, data: PeerData, opts?: Parameters<PeerStore['merge']>[2]) => {
    const protocol = onlyProtocol(data);
    if (protocol === undefined || !options.isCached(protocol)) return merge(id, data, opts);
    const key = `${id.toString()} ${protocol}`;
    const hit = seen.get(key);
    const t = now();
    if (hit !== undefined && hit.until > t) return hit.peer;
    const peer = await merge(id, data, opts);
    if (seen.size >= maxEntries) {
      for (const [k, v] of seen) if (v.until <= t) seen.delete(k);
      // Still full of live entries (many peers at once): start over rather than grow.
      if (seen.size >= maxEntries) seen.clear();
    }
    seen.set(key, { peer, until: t + ttlMs });
    return peer;
  };
}
