/**
 * Every place this project replaces or reads a dependency's internals, in one list. Each patched
 * package is pinned to an exact version in package.json; test/unit/sidecar/patches/patches.test.ts checks every
 * target below against the installed packages, so an upgrade that moves one fails there, and a
 * node whose patch target is missing fails its start (PatchTargetMissingError).
 * The private-network cipher is not a patch: sidecar/crypto/pnet-protector.ts is our own protector;
 * nor is DCUtR: sidecar/nat/dcutr/ is our own service.
 */

export interface PatchInfo {
  /** The id its PatchTargetMissingError names. */
  id: string;
  /** Package and the exact version the patch was written against (pinned in package.json). */
  pkg: string;
  version: string;
  /** What is replaced or read. */
  target: string;
  /** Where it is applied. */
  where: string;
  why: string;
  /** An upstream issue or pull request, when one is known. */
  upstream?: string;
  /** When it can go. */
  removeWhen: string;
  /** Would be worth sending upstream as a fix. */
  sendUpstream: boolean;
}

export const PATCHES: readonly PatchInfo[] = [
  {
    id: 'tcp-connect',
    pkg: '@libp2p/tcp',
    version: '11.0.28',
    target: 'TCP transport private `_connect(ma, options)` (the socket step of `dial()`), replaced once',
    where: 'sidecar/patches/tcp.ts (layers: nat/reuseport-tcp.ts, nat/connect-timeout.ts)',
    why:
      'dials must come from the listening port (SO_REUSEPORT, net.BoundSocket) for hole punching, ' +
      'and a private address gets a short connect timeout so the next address is tried in time',
    upstream: 'https://github.com/libp2p/js-libp2p/issues/2620 (port reuse for TCP dials)',
    removeWhen: '@libp2p/tcp dials from the listening port itself and takes a per-address connect timeout',
    sendUpstream: true,
  },
  {
    id: 'tcp-coalesce-writes',
    pkg: '@libp2p/tcp',
    version: '11.0.28',
    target: "listener private `server` (its 'connection' event); each socket's `write`",
    where: 'sidecar/patches/tcp.ts',
    why:
      'the TCP connection writes every buffer of a message list separately: a 64 KiB read becomes ' +
      'two noise messages and four writes; corked for the tick they are one writev',
    removeWhen: "@libp2p/tcp's sendData corks the socket around a message list",
    sendUpstream: true,
  },
  {
    id: 'libp2p-dial-responder',
    pkg: 'libp2p',
    version: '3.3.11',
    target: 'node-wide `transportManager.dial` and `upgrader.upgradeOutbound`',
    where: 'sidecar/patches/libp2p.ts (installed by nat/hole-punch.ts, asks nat/dcutr/dialer.ts)',
    why:
      "the dial queue drops openConnection's `initiator: false`, so both ends of a TCP simultaneous " +
      'open start noise as initiator; and yamux picks its role from maConn.direction. Our own DCUtR ' +
      'service cannot avoid it: the option is lost in the node-wide dial queue and upgrader, which ' +
      'have no per-dial replacement',
    removeWhen: "libp2p's dial queue passes `initiator` through to the transport and upgrader",
    sendUpstream: true,
  },
  {
    id: 'libp2p-connection-muxer',
    pkg: 'libp2p',
    version: '3.3.11',
    target: "Connection class `muxer` (public on the class, not in the interface) and its 'stream' event",
    where: 'sidecar/patches/libp2p.ts (used by refusals.ts)',
    why: 'a stream refused by multistream-select runs no handler: its muxer event is its only trace',
    removeWhen: 'libp2p emits an event or metric for a refused protocol',
    sendUpstream: true,
  },
  {
    id: 'libp2p-connection-maconn',
    pkg: 'libp2p',
    version: '3.3.11',
    target: 'Connection class `maConn` (public on the class, not in the interface), read only',
    where: 'sidecar/patches/libp2p.ts (used by node/swarm-keys.ts)',
    why: 'the swarm key of a connection is known to the protector, which sees only the transport connection',
    removeWhen: 'libp2p tells a connection protector which connection it protected, or keeps its metadata',
    sendUpstream: false,
  },
  {
    id: 'circuit-relay-hop-handler',
    pkg: '@libp2p/circuit-relay-v2',
    version: '4.2.13',
    target: "relay server private `onHop`; each hop/stop stream's `send`, each connection's `newStream`",
    where: 'sidecar/patches/circuit-relay.ts, patches/libp2p.ts countSends (used by nat/relay-meter.ts)',
    why:
      'bytes a relay carries for others are counted on its own streams; libp2p.use() middleware ' +
      'in 3.3 re-appends the handler on every inbound stream',
    removeWhen: 'the relay server exposes relayed byte counts (a metric or an event)',
    sendUpstream: false,
  },
  {
    id: 'circuit-relay-reservation-store',
    pkg: '@libp2p/circuit-relay-v2',
    version: '4.2.13',
    target:
      'relay transport private `reservationStore` (addRelay, hasReservation, its events and their detail)',
    where: 'sidecar/patches/circuit-relay.ts (used by nat/relay-client.ts)',
    why: 'reservations on configured relays are made, renewed and reported by the relay client',
    removeWhen: 'the relay transport takes configured relays and reports reservation state',
    sendUpstream: false,
  },
  {
    id: 'peer-store-merge-cache',
    pkg: 'libp2p',
    version: '3.3.11',
    target: '`peerStore.merge` (wrapped in place)',
    where: 'sidecar/patches/peer-store-merge.ts',
    why: 'libp2p rewrites the peer record for every negotiated stream; ~15% CPU of new connections',
    removeWhen: "libp2p's connection skips a protocols merge the record already holds",
    sendUpstream: true,
  },
  {
    id: 'yamux-window-update-half',
    pkg: '@chainsafe/libp2p-yamux',
    version: '8.0.1',
    target: 'YamuxStream.prototype.sendWindowUpdate; private `recvWindow`, `recvWindowCapacity`, `state`',
    where: 'sidecar/patches/wire.ts',
    why: 'a window update after every data frame costs a frame and a write each; go-yamux waits for half the window',
    removeWhen: 'js-yamux sends window updates only once half the window is consumed',
    sendUpstream: true,
  },
  {
    id: 'lp-decoder-no-throw',
    pkg: '@libp2p/utils',
    version: '7.4.1',
    target: 'LengthPrefixedDecoder.prototype.decode; private `buffer`, `maxBufferSize`, `maxDataLength`, ...',
    where: 'sidecar/patches/wire.ts',
    why: "noise's frame decoder threw and caught a RangeError at the end of every chunk (8% of busy CPU)",
    removeWhen: 'LengthPrefixedDecoder checks for an empty buffer before decoding a length',
    sendUpstream: true,
  },
  {
    id: 'ssdp-package-json-inline',
    pkg: '@achingbrain/ssdp',
    version: '4.2.4',
    target: "the source line `req('../../package.json')` of dist/src/ssdp.js, rewritten when bundling",
    where: 'bin/bundle-plugins.ts (build time; the bundle build fails when the line is gone)',
    why: 'UPnP discovery reads its name and version from a package.json beside its module, which a bundle has not',
    removeWhen: '@achingbrain/ssdp imports its package.json as JSON or no longer reads it',
    sendUpstream: true,
  },
];
