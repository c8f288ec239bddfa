/** Defaults of the NAT traversal area, applied once where each option is read. */

/** Error codes of a dial from the listening port after which a plain dial is worth trying. */
export const LOCAL_ENDPOINT_ERRORS: ReadonlySet<string> = new Set([
  // the 4-tuple is taken: a connection (or TIME_WAIT) between these two ports already exists
  'EADDRNOTAVAIL',
  // the listener's port is not reusable (it was not opened with SO_REUSEPORT)
  'EADDRINUSE',
  // the bound address cannot reach the remote one (e.g. a loopback bind, a family mismatch)
  'EINVAL',
  'EAFNOSUPPORT',
]);

/**
 * Upper bound of a TCP connect to an address that is not public (`AddressPolicy`), in ms: a pod IP
 * answers a pod of its own cluster in milliseconds and one of another cluster never. 1.5 s leaves
 * room for one lost SYN (Linux retransmits it after 1 s). See connect-timeout.ts.
 */
export const PRIVATE_CONNECT_TIMEOUT_MS = 1_500;

/**
 * How long a peer's non-public address whose connect timed out is not dialled again, in ms: long
 * enough to span a fail-over (every new stream, the DHT and the hole puncher dial the peer), short
 * enough that a pod IP that was only briefly unreachable is tried again soon.
 */
export const UNREACHABLE_MEMORY_MS = 30_000;
