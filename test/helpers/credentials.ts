/**
 * Cluster keys, node identities and credentials for trust tests, made with the same contracts
 * code `peertunnel credential issue` uses; credential files replaced in one step, as an issuer
 * that renews them would.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatClusterPublicKey } from '../../contracts/cluster-key.js';
import { credentialClaims, signCredential } from '../../contracts/credential.js';
import { writeIdentity } from '../../sidecar/cli/node.js';
import { testSwarmKey } from './node-process.js';

export { freePort } from './ports.js';

export const NETWORK = 'mesh';

/** The swarm key every trust test's nodes share, by environment (`startNodeProcess(..., { env })`). */
const KEY_ENV = 'PEERTUNNEL_TEST_KEY';
export const keyEnv: Record<string, string> = { [KEY_ENV]: testSwarmKey() };
/** What every trust test's node config starts with: the key above, loopback, info logs. */
export const loopbackBase = {
  swarmKey: { env: KEY_ENV },
  listen: ['/ip4/127.0.0.1/tcp/0'],
  log: { level: 'info' as const },
};

export interface Cluster {
  name: string;
  key: KeyObject;
  publicKey: string;
}

export function makeCluster(name: string): Cluster {
  const key = generateKeyPairSync('ed25519').privateKey;
  return { name, key, publicKey: formatClusterPublicKey(key) };
}

export interface Workload {
  cluster: Cluster;
  namespace: string;
  serviceAccount?: string;
  expose?: string[];
}

/** A node-to-be: its identity file, its peer ID and the file its credential goes to. */
export interface Member {
  peer: string;
  identity: string;
  credential: string;
}

let n = 0;
export async function newMember(dir: string): Promise<Member> {
  const id = `m${n++}`;
  const identity = join(dir, `${id}.key`);
  return { peer: await writeIdentity(identity), identity, credential: join(dir, `${id}.cred`) };
}

export function issue(peer: string, w: Workload, ttlSeconds: number, network = NETWORK): string {
  const subject = {
    network,
    cluster: w.cluster.name,
    namespace: w.namespace,
    serviceAccount: w.serviceAccount ?? 'default',
    peer,
    expose: w.expose ?? [],
  };
  return signCredential(credentialClaims(subject, Math.floor(Date.now() / 1000), ttlSeconds), w.cluster.key);
}

/** Replaces the member's credential file in one step. */
export async function writeCredential(m: Member, w: Workload, ttlSeconds: number): Promise<void> {
  await writeAtomically(m.credential, `${issue(m.peer, w, ttlSeconds)}\n`);
}

export async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = `${file}.${n++}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, file);
}

/** The config pieces of a credentialed node of `member`. */
export function trustOf(m: Member, trusted: Cluster[], more: Record<string, unknown> = {}) {
  return {
    identity: { file: m.identity },
    trust: {
      network: NETWORK,
      credential: { file: m.credential },
      clusters: trusted.map((c) => ({ name: c.name, publicKey: c.publicKey })),
      ...more,
    },
  };
}

/** Writes a fresh credential every `everyMs`, as an issuer renewing short-lived ones would. */
export function renewEvery(m: Member, w: Workload, ttlSeconds: number, everyMs: number) {
  const state = { renewals: 0, stopped: false };
  const timer = setInterval(() => {
    if (state.stopped) return;
    void writeCredential(m, w, ttlSeconds).then(() => {
      state.renewals++;
    });
  }, everyMs);
  return {
    get renewals() {
      return state.renewals;
    },
    stop() {
      state.stopped = true;
      clearInterval(timer);
    },
  };
}
