/**
 * A minimal STUN (RFC 5389) binding responder for the NAT lab.
 *
 * Why: miniupnpd refuses to map ports when its external address is a reserved range, and every
 * lab address is a documentation range. Its STUN mode is the one path that accepts such an
 * address: it asks a STUN server for its mapped address, and if all four probes come back with the
 * same address and the ports it sent from, it treats the link as 1:1 and enables forwarding.
 * This server answers every Binding request from the socket it arrived on (it ignores
 * CHANGE-REQUEST, which miniupnpd accepts) with XOR-MAPPED-ADDRESS and MAPPED-ADDRESS.
 *
 * Usage: node stun-server.ts <bind-ip> [port=3478]; prints "listening <ip>:<port>" when ready.
 */
import { createSocket } from 'node:dgram';

const MAGIC_COOKIE = 0x2112a442;
const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const ATTR_MAPPED_ADDRESS = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;

const bindIp = process.argv[2] ?? '0.0.0.0';
const port = Number(process.argv[3] ?? '3478');

function addressAttribute(type: number, ip: string, port: number, xor: boolean): Buffer {
  const attr = Buffer.alloc(12);
  attr.writeUInt16BE(type, 0);
  attr.writeUInt16BE(8, 2);
  attr.writeUInt8(0, 4);
  attr.writeUInt8(0x01, 5); // IPv4
  const octets = ip.split('.').map(Number);
  const addr =
    (((octets[0] ?? 0) << 24) | ((octets[1] ?? 0) << 16) | ((octets[2] ?? 0) << 8) | (octets[3] ?? 0)) >>> 0;
  attr.writeUInt16BE(xor ? port ^ (MAGIC_COOKIE >>> 16) : port, 6);
  attr.writeUInt32BE(xor ? (addr ^ MAGIC_COOKIE) >>> 0 : addr, 8);
  return attr;
}

const socket = createSocket('udp4');
socket.on('message', (msg, rinfo) => {
  if (msg.length < 20 || msg.readUInt16BE(0) !== BINDING_REQUEST || msg.readUInt32BE(4) !== MAGIC_COOKIE) {
    return;
  }
  const body = Buffer.concat([
    addressAttribute(ATTR_XOR_MAPPED_ADDRESS, rinfo.address, rinfo.port, true),
    addressAttribute(ATTR_MAPPED_ADDRESS, rinfo.address, rinfo.port, false),
  ]);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(BINDING_SUCCESS, 0);
  header.writeUInt16BE(body.length, 2);
  header.writeUInt32BE(MAGIC_COOKIE, 4);
  msg.copy(header, 8, 8, 20); // transaction id
  socket.send(Buffer.concat([header, body]), rinfo.port, rinfo.address);
});
socket.on('error', (err) => {
  process.stderr.write(`stun-server: ${err.message}\n`);
  process.exit(1);
});
socket.bind(port, bindIp, () => {
  process.stdout.write(`listening ${bindIp}:${port}\n`);
});
process.on('SIGTERM', () => socket.close(() => process.exit(0)));
