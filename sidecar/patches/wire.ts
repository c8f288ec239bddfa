/**
 * Two process-wide fixes of the data path's per-message cost, each applied once through its
 * function (idempotent), after checking its target:
 * - yamux window updates only once half a stream's receive window is consumed (go-yamux's rule;
 *   js-yamux answers every data frame with one, a frame and a socket write each time);
 * - the length-prefixed decoder (noise's frames) stops its loop on an empty buffer instead of
 *   throwing and catching a RangeError at the end of every received chunk.
 */
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream';
import { InvalidParametersError } from '@libp2p/interface';
import { InvalidMessageLengthError, LengthPrefixedDecoder } from '@libp2p/utils';
import type { Uint8ArrayList } from 'uint8arraylist';
import { expectShape, PatchTargetMissingError } from './patch.js';

export const YAMUX_WINDOW_PATCH = 'yamux-window-update-half';
export const LP_DECODER_PATCH = 'lp-decoder-no-throw';

/** The fields of a YamuxStream the window rule reads (private in its types). */
export const YAMUX_STREAM_FIELDS = {
  state: 'number',
  recvWindow: 'number',
  recvWindowCapacity: 'number',
} as const;

interface YamuxWindow {
  state: StreamState;
  recvWindow: number;
  recvWindowCapacity: number;
}

let yamuxApplied = false;

export function applyYamuxWindowRule(): void {
  if (yamuxApplied) return;
  const proto: unknown = YamuxStream.prototype;
  const { sendWindowUpdate } = expectShape(YAMUX_WINDOW_PATCH, 'YamuxStream.prototype', proto, {
    sendWindowUpdate: 'function',
  });
  if (typeof StreamState.Established !== 'number')
    throw new PatchTargetMissingError(YAMUX_WINDOW_PATCH, 'StreamState.Established is missing');
  const stock = sendWindowUpdate as (this: unknown) => void;
  Reflect.set(proto as object, 'sendWindowUpdate', function (this: YamuxWindow): void {
    // Established: no SYN/ACK flag is due and the stream is not paused (both go to the stock step).
    // The sender still has at least half a window of credit, so it never stalls on this.
    if (
      this.state === StreamState.Established &&
      this.recvWindow - this.recvWindowCapacity < this.recvWindow / 2
    )
      return;
    Reflect.apply(stock, this, []);
  });
  yamuxApplied = true;
}

/** The fields of a LengthPrefixedDecoder its decode reads (private in its types). */
export const LP_DECODER_FIELDS = {
  buffer: 'object',
  maxBufferSize: 'number',
  maxDataLength: 'number',
  lengthDecoder: 'function',
  encodingLength: 'function',
} as const;

interface DecoderState {
  buffer: Uint8ArrayList;
  maxBufferSize: number;
  maxDataLength: number;
  lengthDecoder: (data: Uint8ArrayList) => number;
  encodingLength: (length: number) => number;
}

/** LengthPrefixedDecoder.decode with the same results, minus the exception on an empty buffer. */
function* decode(this: DecoderState, buf: Uint8Array | Uint8ArrayList): Generator<Uint8ArrayList> {
  this.buffer.append(buf);
  if (this.buffer.byteLength > this.maxBufferSize)
    throw new InvalidParametersError(
      `Buffer length limit exceeded - ${this.buffer.byteLength}/${this.maxBufferSize}`,
    );
  while (this.buffer.byteLength > 0) {
    let dataLength: number;
    try {
      dataLength = this.lengthDecoder(this.buffer);
    } catch (err) {
      // A length prefix cut in two: wait for the rest.
      if (err instanceof RangeError) break;
      throw err;
    }
    if (dataLength < 0 || dataLength > this.maxDataLength)
      throw new InvalidMessageLengthError('Invalid message length');
    const lengthLength = this.encodingLength(dataLength);
    const chunkLength = lengthLength + dataLength;
    if (this.buffer.byteLength < chunkLength) break;
    const out = this.buffer.sublist(lengthLength, chunkLength);
    this.buffer.consume(chunkLength);
    if (out.byteLength > 0) yield out;
  }
}

let decoderApplied = false;

export function applyDecoderFix(): void {
  if (decoderApplied) return;
  expectShape(LP_DECODER_PATCH, 'LengthPrefixedDecoder.prototype', LengthPrefixedDecoder.prototype, {
    decode: 'function',
  });
  expectShape(LP_DECODER_PATCH, 'a LengthPrefixedDecoder', new LengthPrefixedDecoder(), LP_DECODER_FIELDS);
  Reflect.set(LengthPrefixedDecoder.prototype, 'decode', decode);
  decoderApplied = true;
}
