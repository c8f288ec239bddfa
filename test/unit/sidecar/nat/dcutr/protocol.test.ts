import { describe, expect, it } from '@jest/globals';
import { multiaddr } from '@multiformats/multiaddr';
import {
  decodeMessage,
  encodedLength,
  encodeMessage,
  MAX_ADDRS,
  MAX_MESSAGE_BYTES,
} from '../../../../../sidecar/nat/dcutr/protocol.js';

const PEER = '12D3KooWK8D783S9ij9FZYk6t8tfbKQUs1Sd6HPfa4wuv2odRAPP';
const addr = (s: string) => multiaddr(s).bytes;
const refused = expect.objectContaining({ name: 'DcutrMessageError' });

describe('DCUtR messages', () => {
  it('round-trips CONNECT with addresses and SYNC without', () => {
    const addrs = [addr(`/ip4/198.51.100.10/tcp/4001/p2p/${PEER}`), addr('/ip6/2001:db8::1/tcp/4001')];
    const connect = encodeMessage({ type: 'CONNECT', addrs });
    expect(connect.byteLength).toBe(encodedLength('CONNECT', addrs));
    expect(decodeMessage(connect)).toEqual({ type: 'CONNECT', addrs });
    expect(decodeMessage(encodeMessage({ type: 'SYNC', addrs: [] }))).toEqual({ type: 'SYNC', addrs: [] });
  });

  it('has the protobuf wire form other implementations send (type varint field 1, addresses field 2)', () => {
    // SYNC: field 1, varint 300.
    expect([...encodeMessage({ type: 'SYNC', addrs: [] })]).toEqual([0x08, 0xac, 0x02]);
    // CONNECT with one 2-byte address: field 1 = 100, field 2 = length 2.
    expect([...encodeMessage({ type: 'CONNECT', addrs: [Uint8Array.of(1, 2)] })]).toEqual([
      0x08, 0x64, 0x12, 0x02, 0x01, 0x02,
    ]);
    // Fields in another order and unknown fields (varint, fixed32/64, bytes) are read as protobuf does.
    const mixed = Uint8Array.of(
      ...[0x12, 0x01, 0x07],
      ...[0x18, 0x96, 0x01],
      ...[0x21, 0, 0, 0, 0, 0, 0, 0, 0],
      ...[0x2d, 0, 0, 0, 0],
      ...[0x32, 0x01, 0xff],
      ...[0x08, 0x64],
    );
    expect(decodeMessage(mixed)).toEqual({ type: 'CONNECT', addrs: [Uint8Array.of(7)] });
  });

  it('refuses a message over the size bound, encoding and decoding', () => {
    const big = [new Uint8Array(MAX_MESSAGE_BYTES)];
    expect(() => encodeMessage({ type: 'CONNECT', addrs: big })).toThrow(refused);
    const oversized = new Uint8Array(MAX_MESSAGE_BYTES + 1);
    oversized.set([0x08, 0x64]);
    expect(() => decodeMessage(oversized)).toThrow(refused);
  });

  it('refuses more addresses than the bound, encoding and decoding', () => {
    const many = Array.from({ length: MAX_ADDRS + 1 }, () => Uint8Array.of(4));
    expect(() => encodeMessage({ type: 'CONNECT', addrs: many })).toThrow(refused);
    const atBound = encodeMessage({ type: 'CONNECT', addrs: many.slice(1) });
    expect(decodeMessage(atBound).addrs).toHaveLength(MAX_ADDRS);
    const over = Uint8Array.of(...atBound, 0x12, 0x01, 0x04);
    expect(() => decodeMessage(over)).toThrow(refused);
  });

  it('refuses a message without a type, with an unknown type or cut short', () => {
    expect(() => decodeMessage(Uint8Array.of(0x12, 0x01, 0x04))).toThrow(refused);
    expect(() => decodeMessage(Uint8Array.of(0x08, 0x01))).toThrow(refused);
    expect(() => decodeMessage(Uint8Array.of(0x08, 0x64, 0x12, 0x05, 0x01))).toThrow(refused);
    expect(() => decodeMessage(Uint8Array.of(0x08, 0xac))).toThrow(refused);
    // The type with the wrong wire type, and a group (wire type 3).
    expect(() => decodeMessage(Uint8Array.of(0x0a, 0x01, 0x64))).toThrow(refused);
    expect(() => decodeMessage(Uint8Array.of(0x08, 0x64, 0x1b))).toThrow(refused);
  });
});
