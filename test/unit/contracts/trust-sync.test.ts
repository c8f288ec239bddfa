import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { formatClusterPublicKey } from '../../../contracts/cluster-key.js';
import { ContractError } from '../../../contracts/errors.js';
import { LIMITS } from '../../../contracts/limits.js';
import { parseTrustAnswer, parseTrustRequest, trustProofMessage } from '../../../contracts/trust-sync.js';

const key = () => formatClusterPublicKey(generateKeyPairSync('ed25519').privateKey);
const A = { name: 'a', publicKey: key() };
const B = { name: 'b', publicKey: key() };
const answer = (over: Record<string, unknown> = {}) =>
  JSON.stringify({ v: 1, network: 'mesh', clusters: [A, B], ...over });

/** The one-line error of a refused answer. */
function refusal(text: string): string {
  try {
    parseTrustAnswer(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ContractError);
    const message = (err as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('accepted');
}

describe('parseTrustAnswer', () => {
  it('reads the network and its clusters, in order', () => {
    expect(parseTrustAnswer(answer())).toEqual({ v: 1, network: 'mesh', clusters: [A, B] });
    expect(parseTrustAnswer(answer({ network: 'shop/mesh', clusters: [A] })).clusters).toEqual([A]);
  });

  it('refuses what is not an answer, naming the field in one line', () => {
    expect(refusal('<html>')).toBe('answer: expected JSON');
    expect(refusal('[]')).toBe('answer: expected an object, got a list');
    expect(refusal(answer({ v: 2 }))).toBe('v: expected 1, got number');
    expect(refusal(answer({ extra: true }))).toBe('extra: unknown field');
    expect(refusal(answer({ network: 'Mesh\nx' }))).toBe('network: expected a network name, got "Mesh\\nx"');
    expect(refusal(answer({ network: 7 }))).toBe('network: expected a network name, got number');
    expect(refusal(answer({ clusters: {} }))).toBe('clusters: expected a list, got object');
    expect(refusal(answer({ clusters: null }))).toBe('clusters: expected a list, got null');
  });

  it('never takes an empty list: a node would trust no one', () => {
    expect(refusal(answer({ clusters: [] }))).toBe('clusters: expected at least one cluster');
  });

  it('refuses more clusters than a node holds', () => {
    const many = Array.from({ length: LIMITS.trustedClusters + 1 }, () => A);
    expect(refusal(answer({ clusters: many }))).toBe(
      `clusters: expected at most ${LIMITS.trustedClusters} clusters`,
    );
  });

  it('refuses a malformed cluster, naming it by index', () => {
    expect(refusal(answer({ clusters: [A, 'b'] }))).toBe('clusters[1]: expected an object, got string');
    expect(refusal(answer({ clusters: [A, { ...B, name: 'B_' }] }))).toBe(
      'clusters[1].name: expected a cluster name, got "B_"',
    );
    expect(refusal(answer({ clusters: [{ ...A, name: undefined }] }))).toBe(
      'clusters[0].name: expected a cluster name, got undefined',
    );
    expect(refusal(answer({ clusters: [{ ...A, trusted: true }] }))).toBe(
      'clusters[0].trusted: unknown field',
    );
    expect(refusal(answer({ clusters: [{ ...A, publicKey: 'rsa:abc' }] }))).toBe(
      'clusters[0].publicKey: invalid cluster key: expected ed25519: and 43 base64url characters',
    );
    expect(refusal(answer({ clusters: [{ ...A, publicKey: 1 }] }))).toBe(
      'clusters[0].publicKey: expected a string, got number',
    );
  });
});

describe('parseTrustRequest', () => {
  const ok = { v: 1, credential: 'ptcred1.x.y', at: 1_700_000_000, proof: 'abc_-' };
  it('reads a request', () => {
    expect(parseTrustRequest(JSON.stringify(ok))).toEqual(ok);
  });
  it('refuses anything else', () => {
    for (const bad of [
      'nope',
      'null',
      JSON.stringify({ ...ok, v: 2 }),
      JSON.stringify({ ...ok, credential: '' }),
      JSON.stringify({ ...ok, credential: 'x'.repeat(9000) }),
      JSON.stringify({ ...ok, at: 1.5 }),
      JSON.stringify({ ...ok, proof: 'not base64url!' }),
    ])
      expect(parseTrustRequest(bad)).toBeUndefined();
  });
  it('binds the proof to the peer and the time', () => {
    expect(Buffer.from(trustProofMessage('p', 1)).toString()).toBe('peertunnel-trust-request/1\np\n1');
  });
});
