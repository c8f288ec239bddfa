/**
 * How an operator-managed sidecar keeps its trusted clusters current (docs/architecture.md,
 * Trusted clusters from the operator): it POSTs its credential and a fresh proof of its peer key
 * to `TRUST_PATH` on the operator's HTTPS server every few seconds, and the operator answers with
 * the PeerNetwork's trusted clusters as they are now. The request costs the operator no API call:
 * the credential, signed by the operator's own cluster key, says who asks. The sidecar checks the
 * answer here; anything it does not know is an error, and it keeps the list it had.
 */
import { parseClusterPublicKey } from './cluster-key.js';
import { MAX_CREDENTIAL_BYTES } from './credential.js';
import { ContractError } from './errors.js';
import { LIMITS } from './limits.js';
import { DNS_LABEL_PATTERN, NETWORK_NAME_PATTERN } from './names.js';

/** On the operator's HTTPS server, beside `/credential` (the same certificate). */
export const TRUST_PATH = '/credential/trust';
/** How often a sidecar asks, in seconds (each wait is jittered by ±TRUST_POLL_JITTER). */
export const TRUST_POLL_SECONDS = { default: 5, min: 1, max: 300 } as const;
export const TRUST_POLL_JITTER = 0.2;
/** A request body larger than this is refused unread: a credential and a proof. */
export const MAX_TRUST_REQUEST_BYTES = MAX_CREDENTIAL_BYTES + 1024;
/** An answer larger than this is refused: 32 clusters are about 4 KiB. */
export const MAX_TRUST_ANSWER_BYTES = 64 * 1024;

export interface TrustRequest {
  v: 1;
  /** The sidecar's current credential (`ptcred1....`), issued by this operator's cluster. */
  credential: string;
  /** Unix seconds when the proof was made. */
  at: number;
  /** base64url of the peer key's signature over trustProofMessage(peer, at). */
  proof: string;
}

export interface TrustedCluster {
  name: string;
  publicKey: string;
}

export interface TrustAnswer {
  v: 1;
  /** The network name credentials carry, as the node's `trust.network`. */
  network: string;
  /** This cluster first, then the PeerNetwork's `spec.trust.clusters`. */
  clusters: TrustedCluster[];
}

/** Why the operator refused a trust request: its body's `reason` and the refusal metric's label. */
export const TRUST_REFUSALS = [
  'bad_request',
  'bad_credential',
  'bad_proof',
  'stale_proof',
  'network_gone',
  'network_ambiguous',
  'rate_limited',
] as const;
export type TrustRefusal = (typeof TRUST_REFUSALS)[number];

/** What the peer key signs: bound to the peer and the moment, so it cannot be replayed later. */
export function trustProofMessage(peer: string, at: number): Uint8Array {
  return Buffer.from(`peertunnel-trust-request/1\n${peer}\n${at}`, 'utf8');
}

/** Reads a request body; undefined when it is not one. */
export function parseTrustRequest(text: string): TrustRequest | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(raw) || raw.v !== 1) return undefined;
  const { credential, at, proof } = raw;
  if (typeof credential !== 'string' || credential.length === 0 || credential.length > MAX_CREDENTIAL_BYTES)
    return undefined;
  if (typeof at !== 'number' || !Number.isSafeInteger(at)) return undefined;
  if (typeof proof !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(proof)) return undefined;
  return { v: 1, credential, at, proof };
}

/** Checks an answer; throws ContractError naming the first field that is wrong, in one line. */
export function parseTrustAnswer(text: string): TrustAnswer {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ContractError('answer', 'expected JSON');
  }
  if (!isRecord(raw)) throw new ContractError('answer', `expected an object, got ${kindOf(raw)}`);
  for (const key of Object.keys(raw))
    if (!['v', 'network', 'clusters'].includes(key)) throw new ContractError(key, 'unknown field');
  if (raw.v !== 1) throw new ContractError('v', `expected 1, got ${describe(raw.v)}`);
  const network = matching(raw.network, 'network', NETWORK_NAME_PATTERN, 253, 'a network name');
  if (!Array.isArray(raw.clusters))
    throw new ContractError('clusters', `expected a list, got ${kindOf(raw.clusters)}`);
  if (raw.clusters.length === 0) throw new ContractError('clusters', 'expected at least one cluster');
  if (raw.clusters.length > LIMITS.trustedClusters)
    throw new ContractError('clusters', `expected at most ${LIMITS.trustedClusters} clusters`);
  const clusters = raw.clusters.map((c, i) => trustedCluster(c, `clusters[${i}]`));
  return { v: 1, network, clusters };
}

function trustedCluster(v: unknown, field: string): TrustedCluster {
  if (!isRecord(v)) throw new ContractError(field, `expected an object, got ${kindOf(v)}`);
  for (const key of Object.keys(v))
    if (key !== 'name' && key !== 'publicKey') throw new ContractError(`${field}.${key}`, 'unknown field');
  const name = matching(v.name, `${field}.name`, DNS_LABEL_PATTERN, 63, 'a cluster name');
  if (typeof v.publicKey !== 'string')
    throw new ContractError(`${field}.publicKey`, `expected a string, got ${kindOf(v.publicKey)}`);
  try {
    parseClusterPublicKey(v.publicKey);
  } catch (err) {
    throw new ContractError(`${field}.publicKey`, (err as Error).message);
  }
  return { name, publicKey: v.publicKey };
}

function matching(v: unknown, field: string, pattern: RegExp, max: number, what: string): string {
  if (typeof v !== 'string') throw new ContractError(field, `expected ${what}, got ${kindOf(v)}`);
  if (v.length > max || !pattern.test(v))
    throw new ContractError(field, `expected ${what}, got ${describe(v)}`);
  return v;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const kindOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v);
/** A value in an error line: short, on one line. */
const describe = (v: unknown): string => {
  const s = typeof v === 'string' ? JSON.stringify(v) : kindOf(v);
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
};
