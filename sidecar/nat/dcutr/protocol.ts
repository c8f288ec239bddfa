/**
 * The /libp2p/dcutr wire messages: one protobuf message `HolePunch { required Type type = 1;
 * repeated bytes ObsAddrs = 2; }` with Type CONNECT = 100 and SYNC = 300, each sent with an
 * unsigned-varint length prefix (exchange.ts). Written by hand so that the bounds hold while
 * decoding: a message over MAX_MESSAGE_BYTES or with more than MAX_ADDRS addresses is refused
 * before any address is looked at.
 */
import { DcutrMessageError } from '../errors.js';

export const DCUTR_PROTOCOL = '/libp2p/dcutr';

/** Upper bound of one message's body, bytes (the same bound go-libp2p and js-libp2p read with). */
export const MAX_MESSAGE_BYTES = 4096;

/** Upper bound of the addresses in one message: more is no host's real address list. */
export const MAX_ADDRS = 64;

export type MessageType = 'CONNECT' | 'SYNC';

export interface HolePunchMessage {
  type: MessageType;
  /** Multiaddrs in their binary form, as the peer sent them (not checked here). */
  addrs: Uint8Array[];
}

const TYPE_VALUES: Readonly<Record<MessageType, number>> = { CONNECT: 100, SYNC: 300 };
const TYPE_FIELD = 1;
const ADDRS_FIELD = 2;
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

function varintLength(n: number): number {
  let len = 1;
  for (let v = n; v >= 0x80; v = Math.floor(v / 128)) len++;
  return len;
}

function writeVarint(out: Uint8Array, at: number, n: number): number {
  let pos = at;
  let v = n;
  while (v >= 0x80) {
    out[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[pos++] = v;
  return pos;
}

/** Bytes `addrs` take in a message, with their field tags and lengths. */
export function addrsLength(addrs: readonly Uint8Array[]): number {
  let n = 0;
  for (const a of addrs) n += 1 + varintLength(a.byteLength) + a.byteLength;
  return n;
}

/** Bytes a message of `type` with `addrs` takes (without the stream's length prefix). */
export function encodedLength(type: MessageType, addrs: readonly Uint8Array[]): number {
  return 1 + varintLength(TYPE_VALUES[type]) + addrsLength(addrs);
}

export function encodeMessage(message: HolePunchMessage): Uint8Array {
  const { type, addrs } = message;
  if (addrs.length > MAX_ADDRS)
    throw new DcutrMessageError(`${addrs.length} addresses, more than ${MAX_ADDRS}`);
  const length = encodedLength(type, addrs);
  if (length > MAX_MESSAGE_BYTES)
    throw new DcutrMessageError(`message of ${length} bytes, more than ${MAX_MESSAGE_BYTES}`);
  const out = new Uint8Array(length);
  out[0] = (TYPE_FIELD << 3) | VARINT;
  let pos = writeVarint(out, 1, TYPE_VALUES[type]);
  for (const a of addrs) {
    out[pos++] = (ADDRS_FIELD << 3) | LENGTH_DELIMITED;
    pos = writeVarint(out, pos, a.byteLength);
    out.set(a, pos);
    pos += a.byteLength;
  }
  return out;
}

/** Reads protobuf fields off one message body; every read checks the end. */
class Reader {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.bytes.byteLength;
  }

  varint(): number {
    let value = 0;
    // A varint has at most 10 bytes (a 64-bit value); precision beyond 2^53 does not matter here.
    for (let i = 0; i < 10; i++) {
      const b = this.bytes[this.pos++];
      if (b === undefined) throw new DcutrMessageError('truncated varint');
      value += (b & 0x7f) * 2 ** (7 * i);
      if (b < 0x80) return value;
    }
    throw new DcutrMessageError('varint longer than 10 bytes');
  }

  take(n: number): Uint8Array {
    if (n > this.bytes.byteLength - this.pos) throw new DcutrMessageError('field runs past the message');
    const out = this.bytes.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === FIXED64) this.take(8);
    else if (wireType === LENGTH_DELIMITED) this.take(this.varint());
    else if (wireType === FIXED32) this.take(4);
    else throw new DcutrMessageError(`unsupported wire type ${wireType}`);
  }
}

/** Decodes one message body; unknown fields are skipped, as protobuf readers do. */
export function decodeMessage(bytes: Uint8Array): HolePunchMessage {
  if (bytes.byteLength > MAX_MESSAGE_BYTES)
    throw new DcutrMessageError(`message of ${bytes.byteLength} bytes, more than ${MAX_MESSAGE_BYTES}`);
  const r = new Reader(bytes);
  let typeValue: number | undefined;
  const addrs: Uint8Array[] = [];
  while (!r.done) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (field === TYPE_FIELD && wireType === VARINT) typeValue = r.varint();
    else if (field === ADDRS_FIELD && wireType === LENGTH_DELIMITED) {
      if (addrs.length === MAX_ADDRS) throw new DcutrMessageError(`more than ${MAX_ADDRS} addresses`);
      addrs.push(r.take(r.varint()));
    } else if (field === TYPE_FIELD || field === ADDRS_FIELD || field === 0)
      throw new DcutrMessageError(`field ${field} with wire type ${wireType}`);
    else r.skip(wireType);
  }
  if (typeValue === undefined) throw new DcutrMessageError('message has no type');
  const type = (Object.keys(TYPE_VALUES) as MessageType[]).find((t) => TYPE_VALUES[t] === typeValue);
  if (type === undefined) throw new DcutrMessageError(`unknown message type ${typeValue}`);
  return { type, addrs };
}
