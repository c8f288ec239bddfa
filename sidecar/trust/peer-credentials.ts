/**
 * The credentials connected peers presented, one entry per peer (bounded, dropped when the peer
 * disconnects). A stream's check is a map lookup and a time comparison: the signature is checked
 * once per credential and again only when the trust changed (its generation).
 */
import {
  type CredentialClaims,
  CredentialError,
  type CredentialRefusal,
  checkIssuer,
  checkValidity,
  type DecodedCredential,
  decodeCredential,
} from '../../contracts/credential.js';
import type { TrustStore } from './trust-store.js';

/** Peers whose credentials are kept; the oldest entry goes when a new peer would pass it. */
export const MAX_PEER_CREDENTIALS = 4_096;

export type PeerVerdict = { ok: true; claims: CredentialClaims } | { ok: false; reason: CredentialRefusal };

interface Entry {
  /** The exchange answered (with a credential or without one). */
  answered: boolean;
  cred?: DecodedCredential;
  /** Why what the peer sent could not be read (oversized, malformed) or why the exchange failed. */
  problem?: CredentialRefusal;
  /** checkIssuer's answer, for `generation`. */
  issuer?: CredentialRefusal | 'ok';
  generation: number;
  waiters: Set<() => void>;
}

export class PeerCredentials {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly store: TrustStore) {}

  private entry(peer: string): Entry {
    let e = this.entries.get(peer);
    if (e === undefined) {
      if (this.entries.size >= MAX_PEER_CREDENTIALS) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.drop(oldest);
      }
      e = { answered: false, generation: -1, waiters: new Set() };
      this.entries.set(peer, e);
    }
    return e;
  }

  /**
   * What the peer sent (empty: no credential). Returns the verdict on it now, and whether it is a
   * credential other than the one held before (a renewal, or a first one).
   */
  received(peer: string, bytes: Uint8Array, nowSeconds: number): { verdict: PeerVerdict; changed: boolean } {
    const e = this.entry(peer);
    const before = e.cred?.text;
    e.problem = undefined;
    e.cred = undefined;
    if (bytes.byteLength > 0) {
      try {
        e.cred = decodeCredential(bytes);
      } catch (err) {
        e.problem = err instanceof CredentialError ? err.reason : 'malformed';
      }
    }
    e.generation = -1;
    this.settle(e);
    const changed = e.cred !== undefined && e.cred.text !== before;
    return { verdict: this.verdict(peer, nowSeconds) ?? { ok: false, reason: 'no_credential' }, changed };
  }

  /** The exchange failed: the peer does not speak it (no credential), or it broke off. */
  failed(peer: string, reason: CredentialRefusal): void {
    const e = this.entry(peer);
    // A credential the peer sent by its own exchange stays; a failure of ours does not undo it.
    if (e.cred === undefined) e.problem = reason;
    this.settle(e);
  }

  private settle(e: Entry): void {
    e.answered = true;
    for (const wake of e.waiters) wake();
    e.waiters.clear();
  }

  /** The verdict now; undefined while no exchange with the peer has answered. */
  verdict(peer: string, nowSeconds: number): PeerVerdict | undefined {
    const e = this.entries.get(peer);
    if (e === undefined || !e.answered) return undefined;
    if (e.cred === undefined) return { ok: false, reason: e.problem ?? 'no_credential' };
    if (e.generation !== this.store.generation) {
      e.issuer =
        checkIssuer(e.cred, { network: this.store.network, peer, keysOf: (c) => this.store.keysOf(c) }) ??
        'ok';
      e.generation = this.store.generation;
    }
    if (e.issuer !== 'ok' && e.issuer !== undefined) return { ok: false, reason: e.issuer };
    const time = checkValidity(e.cred.claims, nowSeconds);
    return time === undefined ? { ok: true, claims: e.cred.claims } : { ok: false, reason: time };
  }

  /** The claims of what the peer sent, checked or not (for logs and /status). */
  claimsOf(peer: string): CredentialClaims | undefined {
    return this.entries.get(peer)?.cred?.claims;
  }

  /** Resolves once an exchange with the peer answered, or after `timeoutMs`. */
  async waitAnswered(peer: string, timeoutMs: number): Promise<void> {
    const e = this.entry(peer);
    if (e.answered) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        e.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      e.waiters.add(done);
    });
  }

  drop(peer: string): void {
    const e = this.entries.get(peer);
    if (e === undefined) return;
    this.entries.delete(peer);
    for (const wake of e.waiters) wake();
  }

  /** Peers whose credential this node accepts now. */
  countAccepted(nowSeconds: number): number {
    let n = 0;
    for (const peer of this.entries.keys()) if (this.verdict(peer, nowSeconds)?.ok === true) n++;
    return n;
  }
}
