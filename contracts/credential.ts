/**
 * Workload credentials: what a cluster's signing key (Ed25519) says about one libp2p peer, and the
 * one encoding both the issuer (`peertunnel credential issue`, later the operator) and every node
 * read. Pure: node:crypto computes, nothing here reads a file or the network.
 *
 * Text form, one line: `ptcred1.<base64url(JSON claims)>.<base64url(signature)>`, where the
 * signature is Ed25519 over the ASCII bytes of `ptcred1.<base64url(JSON claims)>` (the claims are
 * signed as sent, so no canonical JSON is needed). The same text is a credential file's content
 * and what travels over CREDENTIAL_PROTOCOL.
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { LIMITS } from './limits.js';
import {
  DNS_LABEL_PATTERN,
  DNS_SUBDOMAIN_PATTERN,
  NETWORK_NAME_PATTERN,
  PEER_ID_PATTERN,
  SERVICE_NAME_PATTERN,
} from './names.js';

/** Each side sends its credential (length-prefixed; empty: none) when a connection opens. */
export const CREDENTIAL_PROTOCOL = '/peertunnel/credential/1.0.0';
export const CREDENTIAL_FORMAT = 'ptcred1';
/** A credential longer than this is refused unread (64 service names of 63 characters fit). */
export const MAX_CREDENTIAL_BYTES = 8192;
/** A credential is accepted this many seconds before its notBefore (issuers' clocks differ). */
export const NOT_BEFORE_SKEW_SECONDS = 30;
/** Refusals a node keeps for its /status, newest last. */
export const MAX_RECENT_REFUSALS = 32;

export interface CredentialClaims {
  v: 1;
  /** The network (PeerNetwork) the credential is for; a node of another network refuses it. */
  network: string;
  /** The cluster whose signing key signed it. */
  cluster: string;
  namespace: string;
  serviceAccount: string;
  /** The libp2p peer ID of the holder: only a connection authenticated as this peer may use it. */
  peer: string;
  /** The service names the holder may expose (serve to forwarders). */
  expose: string[];
  /** Unix seconds. */
  notBefore: number;
  /** Unix seconds; not valid from this second on. */
  expires: number;
}

/** Who a credential is for and what it grants: the claims without the version and the time window. */
export type CredentialSubject = Omit<CredentialClaims, 'v' | 'notBefore' | 'expires'>;

/** The claims of a credential valid from `now` (Unix seconds) for `ttlSeconds`, as every issuer makes them. */
export function credentialClaims(
  subject: CredentialSubject,
  now: number,
  ttlSeconds: number,
): CredentialClaims {
  return {
    v: 1,
    ...subject,
    expose: [...new Set(subject.expose)],
    notBefore: now,
    expires: now + ttlSeconds,
  };
}

/** Why a peer's credential, or a peer without one, was refused: the `reason` label. */
export const CREDENTIAL_REFUSALS = [
  'no_credential',
  'credential_timeout',
  'oversized',
  'malformed',
  'untrusted_cluster',
  'bad_signature',
  'wrong_network',
  'wrong_peer',
  'not_yet_valid',
  'expired',
  'not_named',
  'not_allowed',
] as const;
export type CredentialRefusal = (typeof CREDENTIAL_REFUSALS)[number];

/** A credential that cannot be read at all; `field` names the claim when one is wrong. */
export class CredentialError extends Error {
  readonly reason: 'oversized' | 'malformed';
  constructor(reason: 'oversized' | 'malformed', detail: string) {
    super(`invalid credential: ${detail}`);
    this.name = 'CredentialError';
    this.reason = reason;
  }
}

export interface DecodedCredential {
  claims: CredentialClaims;
  /** The text it was read from (trimmed): sent on as is. */
  text: string;
  signed: Buffer;
  signature: Buffer;
}

/** Signs claims with a cluster's private key; returns the one-line text form. */
export function signCredential(claims: CredentialClaims, privateKey: KeyObject): string {
  checkClaims(claims);
  const signedPart = `${CREDENTIAL_FORMAT}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
  const signature = sign(null, Buffer.from(signedPart, 'ascii'), privateKey);
  const text = `${signedPart}.${signature.toString('base64url')}`;
  if (text.length > MAX_CREDENTIAL_BYTES)
    throw new CredentialError('oversized', `${text.length} bytes, more than ${MAX_CREDENTIAL_BYTES}`);
  return text;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/** Reads the text form (a signature is not checked here); throws CredentialError. */
export function decodeCredential(input: string | Uint8Array): DecodedCredential {
  if (input.length > MAX_CREDENTIAL_BYTES)
    throw new CredentialError('oversized', `more than ${MAX_CREDENTIAL_BYTES} bytes`);
  const text = (typeof input === 'string' ? input : Buffer.from(input).toString('latin1')).trim();
  const parts = text.split('.');
  if (parts.length !== 3 || parts[0] !== CREDENTIAL_FORMAT)
    throw new CredentialError('malformed', `expected ${CREDENTIAL_FORMAT}.<claims>.<signature>`);
  const [, body = '', sig = ''] = parts;
  if (!BASE64URL.test(body) || !BASE64URL.test(sig))
    throw new CredentialError('malformed', 'expected base64url claims and signature');
  const signature = Buffer.from(sig, 'base64url');
  if (signature.length !== 64) throw new CredentialError('malformed', 'expected a 64-byte Ed25519 signature');
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw new CredentialError('malformed', 'the claims are not JSON');
  }
  return {
    claims: checkClaims(raw),
    text,
    signed: Buffer.from(`${CREDENTIAL_FORMAT}.${body}`, 'ascii'),
    signature,
  };
}

function field(raw: Record<string, unknown>, name: string, pattern: RegExp, max: number): string {
  const v = raw[name];
  if (typeof v !== 'string' || v.length > max || !pattern.test(v))
    throw new CredentialError('malformed', `${name}: expected a name matching ${pattern.source}`);
  return v;
}

function seconds(raw: Record<string, unknown>, name: string): number {
  const v = raw[name];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
    throw new CredentialError('malformed', `${name}: expected unix seconds (an integer)`);
  return v;
}

const CLAIM_NAMES = new Set([
  'v',
  'network',
  'cluster',
  'namespace',
  'serviceAccount',
  'peer',
  'expose',
  'notBefore',
  'expires',
]);

/** Checks the shape of claims (an issuer's before signing, a node's after decoding). */
export function checkClaims(raw: unknown): CredentialClaims {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new CredentialError('malformed', 'expected the claims to be an object');
  const r = raw as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!CLAIM_NAMES.has(k)) throw new CredentialError('malformed', `${k}: unknown claim`);
  if (r.v !== 1) throw new CredentialError('malformed', 'v: expected 1');
  const expose = r.expose;
  if (!Array.isArray(expose) || expose.length > LIMITS.exposes)
    throw new CredentialError('malformed', `expose: expected a list of at most ${LIMITS.exposes} names`);
  expose.forEach((name, i) => {
    if (typeof name !== 'string' || !SERVICE_NAME_PATTERN.test(name))
      throw new CredentialError('malformed', `expose[${i}]: expected a service name`);
  });
  const claims: CredentialClaims = {
    v: 1,
    network: field(r, 'network', NETWORK_NAME_PATTERN, 253),
    cluster: field(r, 'cluster', DNS_LABEL_PATTERN, 63),
    namespace: field(r, 'namespace', DNS_LABEL_PATTERN, 63),
    serviceAccount: field(r, 'serviceAccount', DNS_SUBDOMAIN_PATTERN, 253),
    peer: field(r, 'peer', PEER_ID_PATTERN, 128),
    expose: expose as string[],
    notBefore: seconds(r, 'notBefore'),
    expires: seconds(r, 'expires'),
  };
  if (claims.expires <= claims.notBefore)
    throw new CredentialError('malformed', 'expires: expected a time after notBefore');
  return claims;
}

export interface IssuerContext {
  /** The network this node belongs to. */
  network: string;
  /** The peer the credential arrived from (the connection's authenticated peer ID). */
  peer: string;
  /** The trusted keys of a cluster name; none when the cluster is not trusted. */
  keysOf(cluster: string): readonly KeyObject[];
}

/**
 * Who signed it and for whom: a trusted cluster's key, this network, this peer. Time is checked
 * apart (checkValidity), because a node checks it on every stream and this only when trust changes.
 */
export function checkIssuer(cred: DecodedCredential, ctx: IssuerContext): CredentialRefusal | undefined {
  const keys = ctx.keysOf(cred.claims.cluster);
  if (keys.length === 0) return 'untrusted_cluster';
  if (!keys.some((k) => verify(null, cred.signed, k, cred.signature))) return 'bad_signature';
  if (cred.claims.network !== ctx.network) return 'wrong_network';
  if (cred.claims.peer !== ctx.peer) return 'wrong_peer';
  return undefined;
}

/** Whether the credential is valid at `nowSeconds` (fractional seconds allowed). */
export function checkValidity(claims: CredentialClaims, nowSeconds: number): CredentialRefusal | undefined {
  if (nowSeconds + NOT_BEFORE_SKEW_SECONDS < claims.notBefore) return 'not_yet_valid';
  if (nowSeconds >= claims.expires) return 'expired';
  return undefined;
}

/** Both checks: a credential this node accepts from `ctx.peer` now. */
export function verifyCredential(
  cred: DecodedCredential,
  ctx: IssuerContext,
  nowSeconds: number,
): CredentialRefusal | undefined {
  return checkIssuer(cred, ctx) ?? checkValidity(cred.claims, nowSeconds);
}
