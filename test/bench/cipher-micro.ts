/**
 * Cipher micro-bench, bounded (each cell runs for about `--ms` ms, default 400), in one process:
 *   - pnet: the node's protector vs stock @libp2p/pnet (WebAssembly xsalsa20), bytes sent one way
 *     through an in-memory connection pair, and the bare ciphers per chunk size;
 *   - noise AEAD: libsodium vs OpenSSL (cached KeyObject) vs noise's default, encrypt + decrypt.
 * Prints CPU ms per MiB (process CPU ÷ MiB) and MiB/s.
 *   node dist/test/bench/cipher-micro.js [--ms 400]
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { defaultCrypto } from '@chainsafe/libp2p-noise/crypto';
import type { MessageStream } from '@libp2p/interface';
import { preSharedKey } from '@libp2p/pnet';
import { multiaddrConnectionPair } from '@libp2p/utils';
import { generateSwarmKey, parseSwarmKey } from '../../sidecar/config/swarm-key.js';
import { opensslAead, sodiumAead } from '../../sidecar/crypto/noise-crypto.js';
import { PnetProtector } from '../../sidecar/crypto/pnet-protector.js';
import { XSalsa20Stream } from '../../sidecar/crypto/xsalsa20.js';

const msArg = process.argv.indexOf('--ms');
const BUDGET_MS = msArg > 0 ? Number(process.argv[msArg + 1]) : 400;
const MiB = 1024 * 1024;

interface Cell {
  cpuMsPerMiB: number;
  mibPerSec: number;
}

/** Runs `op` (which handles `bytes` bytes) repeatedly for the budget. */
function measure(bytes: number, op: () => void): Cell {
  for (let i = 0; i < 50; i++) op(); // warm up
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let done = 0;
  while (Number(process.hrtime.bigint() - t0) / 1e6 < BUDGET_MS) {
    for (let i = 0; i < 20; i++) op();
    done += 20 * bytes;
  }
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const mib = done / MiB;
  return { cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / mib, mibPerSec: mib / wall };
}

const fmt = (c: Cell) =>
  `${c.cpuMsPerMiB.toFixed(3).padStart(8)} ms/MiB ${c.mibPerSec.toFixed(0).padStart(6)} MiB/s`;

interface WasmXsalsa20 {
  update(input: Uint8Array, output?: Uint8Array): Uint8Array;
}
const wasmXsalsa20 = createRequire(import.meta.resolve('@libp2p/pnet'))('xsalsa20') as (
  nonce: Uint8Array,
  key: Uint8Array,
) => WasmXsalsa20;

function bareCiphers(): void {
  console.log('pnet cipher alone (xor of one chunk, output into a new buffer as each protector sends):');
  const key = randomBytes(32);
  for (const size of [64, 1_200, 64 * 1024]) {
    const data = randomBytes(size);
    const wasm = wasmXsalsa20(randomBytes(24), key);
    const native = new XSalsa20Stream(randomBytes(24), key);
    const a = measure(size, () => wasm.update(data));
    const b = measure(size, () => native.xor(data, Buffer.allocUnsafe(size)));
    console.log(
      `  ${String(size).padStart(6)} B  wasm ${fmt(a)}   native ${fmt(b)}   ${(a.cpuMsPerMiB / b.cpuMsPerMiB).toFixed(1)}x`,
    );
  }
}

/** Bytes through a protected in-memory pair, one way, in `chunk`-byte sends; resolves with the cell. */
async function throughPair(kind: 'ours' | 'stock', chunk: number, total: number): Promise<Cell> {
  const psk = parseSwarmKey(generateSwarmKey());
  const [outbound, inbound] = multiaddrConnectionPair();
  const protect = (c: MessageStream) =>
    kind === 'ours' ? new PnetProtector({ psk }).protect(c) : preSharedKey({ psk })().protect(c);
  const [a, b] = await Promise.all([protect(outbound), protect(inbound)]);
  const data = randomBytes(chunk);
  let got = 0;
  const done = new Promise<void>((resolve) =>
    b.addEventListener('message', (evt) => {
      got += evt.data.byteLength;
      if (got >= total) resolve();
    }),
  );
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let sent = 0; sent < total; sent += chunk)
    if (!a.send(data)) await new Promise((r) => a.addEventListener('drain', r, { once: true }));
  await done;
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await Promise.all([a.close(), b.close()]);
  return { cpuMsPerMiB: (cpu.user + cpu.system) / 1000 / (total / MiB), mibPerSec: total / MiB / wall };
}

async function protectors(): Promise<void> {
  console.log('pnet protector, one way through an in-memory connection pair (both ends in this process):');
  for (const [chunk, total] of [
    [1_200, 32 * MiB],
    [64 * 1024, 256 * MiB],
  ] as const) {
    await throughPair('stock', chunk, total / 8); // warm up
    await throughPair('ours', chunk, total / 8);
    const stock = await throughPair('stock', chunk, total);
    const ours = await throughPair('ours', chunk, total);
    console.log(
      `  ${String(chunk).padStart(6)} B sends, ${total / MiB} MiB  @libp2p/pnet ${fmt(stock)}   ours ${fmt(ours)}   ${(stock.cpuMsPerMiB / ours.cpuMsPerMiB).toFixed(1)}x`,
    );
  }
}

function aeads(): void {
  console.log('noise AEAD, encrypt + decrypt one message (transport: decrypt in place as noise does):');
  const k = randomBytes(32);
  const nonce = Buffer.alloc(12);
  const ad = new Uint8Array(0);
  for (const size of [64, 1_200, 64 * 1024 - 17]) {
    const plain = randomBytes(size);
    const row: string[] = [];
    const cells: Record<string, Cell> = {};
    for (const [name, impl] of [
      ['default', defaultCrypto],
      ['openssl', opensslAead],
      ['sodium', sodiumAead],
    ] as const) {
      cells[name] = measure(size, () => {
        const c = impl.chaCha20Poly1305Encrypt(plain, nonce, ad, k).subarray();
        impl.chaCha20Poly1305Decrypt(c, nonce, ad, k, c.subarray(0, size));
      });
      row.push(`${name} ${fmt(cells[name])}`);
    }
    console.log(`  ${String(size).padStart(6)} B  ${row.join('   ')}`);
  }
}

bareCiphers();
aeads();
await protectors();
