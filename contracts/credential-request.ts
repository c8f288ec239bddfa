/**
 * How a sidecar asks its cluster's operator for a credential (`POST /credential` on the operator's
 * HTTPS server) and what it gets back. The sidecar proves two things: who it is in Kubernetes (its
 * projected ServiceAccount token, audience CREDENTIAL_AUDIENCE, bound to its pod) and that it
 * holds the private key of the peer ID the credential will name (`proof`: a signature by that key
 * over the peer ID, a hash of the token and the time). Pure apart from the signature check.
 */
import { createHash } from 'node:crypto';
import { peerIdFromString } from '@libp2p/peer-id';
import { PEER_ID_PATTERN } from './names.js';

/** The audience of the projected token the operator accepts: a token for the API server is refused. */
export const CREDENTIAL_AUDIENCE = 'peertunnel';
/** The path on the operator's HTTPS server (the webhook's server, the same certificate). */
export const CREDENTIAL_PATH = '/credential';
/** A request body larger than this is refused unread (a projected token is about 1 KiB). */
export const MAX_CREDENTIAL_REQUEST_BYTES = 16 * 1024;
/** How long a sidecar waits for the operator's answer. */
export const CREDENTIAL_REQUEST_TIMEOUT_MS = 10_000;
/** A proof older or newer than this (seconds, either way) is refused: it cannot be replayed later. */
export const PROOF_WINDOW_SECONDS = 120;

export interface CredentialRequest {
  v: 1;
  /** The projected ServiceAccount token, as the kubelet wrote it. */
  token: string;
  /** The libp2p peer ID the credential is for. */
  peer: string;
  /** Unix seconds when the proof was made. */
  at: number;
  /** base64url of the peer key's signature over proofMessage(peer, token, at). */
  proof: string;
}

export interface CredentialResponse {
  credential: string;
}

/** Why a request was refused: the `reason` label and the body's `reason`. */
export const ISSUE_REFUSALS = [
  'bad_request',
  'bad_proof',
  'stale_proof',
  'token_invalid',
  'not_a_pod_token',
  'pod_gone',
  'pod_terminating',
  'wrong_service_account',
  'no_tunnel',
  'network_open',
  'rate_limited',
  'unavailable',
] as const;
export type IssueRefusal = (typeof ISSUE_REFUSALS)[number];

export interface IssueRefusalBody {
  reason: IssueRefusal;
  message: string;
}

/** What the peer key signs: nothing here can be reused for another peer, token or moment. */
export function proofMessage(peer: string, token: string, at: number): Uint8Array {
  const tokenHash = createHash('sha256').update(token).digest('base64url');
  return Buffer.from(`peertunnel-credential-request/1\n${peer}\n${tokenHash}\n${at}`, 'utf8');
}

/** Reads a request body; undefined when it is not one (a one-line reason is not worth more). */
export function parseCredentialRequest(text: string): CredentialRequest | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  if (r.v !== 1) return undefined;
  if (typeof r.token !== 'string' || r.token.length === 0 || r.token.length > 8192) return undefined;
  if (typeof r.peer !== 'string' || !PEER_ID_PATTERN.test(r.peer)) return undefined;
  if (typeof r.at !== 'number' || !Number.isSafeInteger(r.at)) return undefined;
  if (typeof r.proof !== 'string' || !/^[A-Za-z0-9_-]{1,200}$/.test(r.proof)) return undefined;
  return { v: 1, token: r.token, peer: r.peer, at: r.at, proof: r.proof };
}

/**
 * Whether `proof` is the peer's signature over the message, made within the window around
 * `nowSeconds`. Only peer IDs that embed their public key (Ed25519, secp256k1) can prove anything.
 */
export async function checkProof(
  req: CredentialRequest,
  nowSeconds: number,
): Promise<'bad_proof' | 'stale_proof' | undefined> {
  if (Math.abs(nowSeconds - req.at) > PROOF_WINDOW_SECONDS) return 'stale_proof';
  let key: { verify(data: Uint8Array, sig: Uint8Array): boolean | Promise<boolean> } | undefined;
  try {
    key = peerIdFromString(req.peer).publicKey;
  } catch {
    return 'bad_proof';
  }
  if (key === undefined) return 'bad_proof';
  try {
    const ok = await key.verify(
      proofMessage(req.peer, req.token, req.at),
      Buffer.from(req.proof, 'base64url'),
    );
    return ok ? undefined : 'bad_proof';
  } catch {
    return 'bad_proof';
  }
}
