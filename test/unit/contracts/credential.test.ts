/**
 * Credential verification, one check per test: each credential is valid but for the one thing the
 * test changes, so a verifier without that check would accept it and the test would fail.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import {
  formatClusterPublicKey,
  parseClusterPrivateKey,
  parseClusterPublicKey,
} from '../../../contracts/cluster-key.js';
import {
  type CredentialClaims,
  CredentialError,
  decodeCredential,
  MAX_CREDENTIAL_BYTES,
  NOT_BEFORE_SKEW_SECONDS,
  signCredential,
  verifyCredential,
} from '../../../contracts/credential.js';

const PEER = '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA';
const OTHER_PEER = '12D3KooWHYD3Zt9dqhN8R1zzxpd3TCzAcN7H4iYEtrHKoCWZhRdx';
const NOW = 1_800_000_000;

const key = () => generateKeyPairSync('ed25519').privateKey;
const clusterA = key();

function claims(over: Partial<CredentialClaims> = {}): CredentialClaims {
  return {
    v: 1,
    network: 'mesh',
    cluster: 'a',
    namespace: 'shop',
    serviceAccount: 'redis',
    peer: PEER,
    expose: ['redis'],
    notBefore: NOW - 10,
    expires: NOW + 3600,
    ...over,
  };
}

/** The verdict of a node of network "mesh" trusting cluster a's key, for a stream from PEER. */
function verdict(text: string, o: { keys?: KeyObject[]; peer?: string; now?: number } = {}) {
  const keys = o.keys ?? [parseClusterPublicKey(formatClusterPublicKey(clusterA))];
  return verifyCredential(
    decodeCredential(text),
    { network: 'mesh', peer: o.peer ?? PEER, keysOf: (c) => (c === 'a' ? keys : []) },
    o.now ?? NOW,
  );
}

describe('credential verification', () => {
  it('accepts a credential signed by a trusted cluster for this peer, network and time', () => {
    const text = signCredential(claims(), clusterA);
    expect(text).toMatch(/^ptcred1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(verdict(text)).toBeUndefined();
    expect(decodeCredential(`${text}\n`).claims).toEqual(claims());
  });

  it('refuses a credential signed by another key under a trusted cluster name', () => {
    expect(verdict(signCredential(claims(), key()))).toBe('bad_signature');
  });

  it('accepts either key of a cluster listed twice while its key rotates', () => {
    const next = key();
    const keys = [clusterA, next].map((k) => parseClusterPublicKey(formatClusterPublicKey(k)));
    expect(verdict(signCredential(claims(), next), { keys })).toBeUndefined();
  });

  it('refuses a credential of a cluster the node does not trust', () => {
    expect(verdict(signCredential(claims({ cluster: 'b' }), clusterA))).toBe('untrusted_cluster');
  });

  it('refuses an expired credential, from its expiry second on', () => {
    const text = signCredential(claims({ expires: NOW + 60 }), clusterA);
    expect(verdict(text, { now: NOW + 59.9 })).toBeUndefined();
    expect(verdict(text, { now: NOW + 60 })).toBe('expired');
  });

  it('refuses a credential not yet valid (beyond the allowed clock skew)', () => {
    const text = signCredential(claims({ notBefore: NOW + 600, expires: NOW + 3600 }), clusterA);
    expect(verdict(text)).toBe('not_yet_valid');
    expect(verdict(text, { now: NOW + 600 - NOT_BEFORE_SKEW_SECONDS })).toBeUndefined();
  });

  it('refuses a credential presented by another peer than the one it names', () => {
    expect(verdict(signCredential(claims(), clusterA), { peer: OTHER_PEER })).toBe('wrong_peer');
  });

  it('refuses a credential of another network', () => {
    expect(verdict(signCredential(claims({ network: 'other' }), clusterA))).toBe('wrong_network');
  });

  it('refuses a credential whose claims were changed after signing', () => {
    const [format, , signature] = signCredential(claims(), clusterA).split('.');
    const forged = Buffer.from(JSON.stringify(claims({ expose: ['redis', 'payments'] }))).toString(
      'base64url',
    );
    expect(verdict(`${format}.${forged}.${signature}`)).toBe('bad_signature');
  });

  it('refuses oversized input before reading it, even when it holds a valid credential', () => {
    const padded = `${signCredential(claims(), clusterA)}${' '.repeat(MAX_CREDENTIAL_BYTES)}`;
    expect(() => decodeCredential(padded)).toThrow(CredentialError);
    expect(() => decodeCredential(padded)).toThrow(/more than 8192 bytes/);
    expect(() => decodeCredential(Buffer.alloc(MAX_CREDENTIAL_BYTES + 1, 0x41))).toThrow(CredentialError);
  });

  it('refuses garbage with a one-line reason', () => {
    for (const bad of ['', 'hello', 'ptcred1.a.b', 'ptcred1.!!.??', `ptcred1.${'e30'}.${'A'.repeat(86)}`]) {
      const err = (() => {
        try {
          decodeCredential(bad);
        } catch (e) {
          return e as CredentialError;
        }
        return undefined;
      })();
      expect(err?.name).toBe('CredentialError');
      expect(err?.reason).toBe('malformed');
      expect(err?.message).not.toContain('\n');
    }
  });

  it('refuses claims of the wrong shape at signing and at reading', () => {
    expect(() => signCredential(claims({ namespace: 'Shop!' }), clusterA)).toThrow(/namespace/);
    expect(() => signCredential(claims({ expires: NOW - 20 }), clusterA)).toThrow(/expires/);
    const extra = Buffer.from(JSON.stringify({ ...claims(), admin: true })).toString('base64url');
    expect(() => decodeCredential(`ptcred1.${extra}.${'A'.repeat(86)}`)).toThrow(/admin: unknown claim/);
  });

  it('reads cluster keys only in their one format', () => {
    const line = formatClusterPublicKey(clusterA);
    expect(line).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/);
    expect(() => parseClusterPublicKey('ed25519:abc')).toThrow(/43 base64url/);
    expect(() => parseClusterPrivateKey('not a pem')).toThrow(/PEM/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    expect(() => parseClusterPrivateKey(rsa.export({ format: 'pem', type: 'pkcs8' }).toString())).toThrow(
      /Ed25519/,
    );
  });
});
