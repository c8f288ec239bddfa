/**
 * Work-around for a crash in the PSK cipher, imported once by sidecar/node.ts:
 * feeds xsalsa20 (the PSK cipher of @libp2p/pnet) at most 64 KiB per call.
 *
 * Why: xsalsa20@1.2.0 keeps a per-cipher view of one WebAssembly memory shared by the whole
 * process (10 pages, max 1000). A single update larger than the free space (~640 KiB, e.g. a
 * large yamux batch through pnet's sendData) grows the memory, which detaches every other
 * cipher's view; each of those then grows the memory again on its next call (its view reads as
 * length 0), so alternating ciphers add a page or two per call until `Memory.grow()` throws
 * "Maximum memory size exceeded" inside pnet's event listener and the node process dies.
 * Chunks small enough never to grow the memory avoid the whole chain; should it grow anyway, a
 * detached view is replaced by the live one instead of growing again. Upstream fix:
 * libp2p/js-libp2p#3585 (chunking, plus finalize() of closed connections' ciphers, which pnet
 * never calls: each connection leaves two 64-byte slots behind for the life of the process).
 *
 * Remove once a released @libp2p/pnet contains js-libp2p#3585.
 *
 * Also: without an `output`, the xor happens in place, into `input`, instead of into a new array.
 * pnet calls update() without one on buffers nobody reads again: received, the socket's own read
 * buffer (the read queue hands it over and forgets it); sent, `data.subarray()` of noise's output,
 * which is a fresh concatenation (noise frames every message as [length, ciphertext]). Noise
 * itself decrypts in place for the same reason. It saves an allocation, a copy and the garbage of
 * every 64 KiB on the data path: about 12% more throughput in the bench (interleaved A/B runs).
 */
import { createRequire } from 'node:module';

interface WasmCipher {
  /** The cipher's view of the shared WebAssembly memory; length 0 once a grow detached it. */
  _memory: Uint8Array;
}
interface XSalsa20Like {
  prototype: {
    update(this: { _xor: WasmCipher | null }, input: Uint8Array, output?: Uint8Array): Uint8Array;
  };
}

const CHUNK = 64 * 1024;
const require = createRequire(import.meta.resolve('@libp2p/pnet'));
const XSalsa20 = require('xsalsa20') as XSalsa20Like;
const update = XSalsa20.prototype.update;
/** The newest live view of the shared memory (a grow detaches every older one). */
let live: Uint8Array | undefined;

XSalsa20.prototype.update = function chunkedUpdate(input, output) {
  const xor = this._xor;
  // Never-finalized ciphers (pnet does not call finalize) still move the data area up, so the
  // memory can still grow, rarely: a stale view must then be replaced, not grown again.
  if (xor !== null && xor._memory.byteLength === 0 && live !== undefined && live.byteLength > 0)
    xor._memory = live;
  const out = output ?? input;
  // The cipher keeps its keystream position across calls, so splitting the input is exact.
  for (let at = 0; at < input.byteLength; at += CHUNK)
    update.call(this, input.subarray(at, at + CHUNK), out.subarray(at, at + CHUNK));
  if (xor !== null) live = xor._memory;
  return out;
};
