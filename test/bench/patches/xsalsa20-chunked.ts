/**
 * Bench-only preview of a fix, loaded into node processes with `--import` (BENCH_NODE_OPTIONS):
 * feeds xsalsa20 (the PSK cipher of @libp2p/pnet) at most 64 KiB per call.
 *
 * Why: xsalsa20@1.2.0 keeps a per-cipher view of one WebAssembly memory shared by the whole
 * process (10 pages, max 1000). A single update larger than the free space (~640 KiB, e.g. a
 * large yamux batch through pnet's sendData) grows the memory, which detaches every other
 * cipher's view; each of those then grows the memory again on its next call (its view reads as
 * length 0), so alternating ciphers add a page or two per call until `Memory.grow()` throws
 * "Maximum memory size exceeded" inside pnet's event listener and the node process dies.
 * Chunks small enough never to grow the memory avoid the whole chain. Upstream fix:
 * libp2p/js-libp2p#3585 (chunking plus finalize() of closed connections' ciphers).
 *
 * Never loaded by the product; the sidecar would carry this in its own connection protector.
 */
import { createRequire } from 'node:module';

interface XSalsa20Like {
  prototype: { update(input: Uint8Array, output?: Uint8Array): Uint8Array };
}

const CHUNK = 64 * 1024;
const require = createRequire(import.meta.resolve('@libp2p/pnet'));
const XSalsa20 = require('xsalsa20') as XSalsa20Like;
const update = XSalsa20.prototype.update;

XSalsa20.prototype.update = function chunkedUpdate(input: Uint8Array, output?: Uint8Array): Uint8Array {
  if (input.byteLength <= CHUNK) return update.call(this, input, output);
  const out = output ?? new Uint8Array(input.byteLength);
  // The cipher keeps its keystream position across calls, so splitting the input is exact.
  for (let at = 0; at < input.byteLength; at += CHUNK)
    update.call(this, input.subarray(at, at + CHUNK), out.subarray(at, at + CHUNK));
  return out;
};
