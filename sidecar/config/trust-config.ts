/**
 * The `trust` section of the node config and the trust file it may name: which clusters' signing
 * keys this node trusts, which peers it trusts without a credential, which names uncredentialed
 * peers may serve and reach (kubo's `ipfs p2p` cannot present a credential), and where this node's
 * own credential is. No `trust` section: an open network, as before credentials existed.
 */
import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { CLUSTER_PUBLIC_KEY_PATTERN, parseClusterPublicKey } from '../../contracts/cluster-key.js';
import { LIMITS } from '../../contracts/limits.js';
import {
  DNS_LABEL_PATTERN,
  DNS_SUBDOMAIN_PATTERN,
  NETWORK_NAME_PATTERN,
  PEER_ID_PATTERN,
  SERVICE_NAME_PATTERN,
} from '../../contracts/names.js';
import { ANY } from '../../contracts/trust.js';
import { TRUST_POLL_SECONDS } from '../../contracts/trust-sync.js';
import { ConfigError } from '../node/errors.js';
import { configErrorOf } from './config-error.js';

/** A trust file larger than this is refused unread (32 clusters and 256 peers are far smaller). */
export const MAX_TRUST_FILE_BYTES = 256 * 1024;

const name = (pattern: RegExp, max: number, what: string) =>
  z
    .string({ error: `expected ${what} (string)` })
    .max(max, { error: `expected ${what} of at most ${max} characters`, abort: true })
    .regex(pattern, { error: `expected ${what}: lowercase letters, digits and "-"` });

const nameOrAny = (pattern: RegExp, max: number, what: string) =>
  z
    .string({ error: `expected ${what} or "*" (string)` })
    .max(max, { error: `expected ${what} of at most ${max} characters`, abort: true })
    .refine((v) => v === ANY || pattern.test(v), { error: `expected ${what} or "*"` })
    .default(ANY);

const filePath = z
  .string({ error: 'expected a file path (string)' })
  .min(1, { error: 'expected a file path' })
  .max(4096, { error: 'expected a path of at most 4096 characters' });

const peerId = z
  .string({ error: 'expected a peer ID (string)' })
  .max(128, { error: 'expected a peer ID', abort: true })
  .regex(PEER_ID_PATTERN, { error: 'expected a base58 peer ID such as 12D3KooW...' });

const publicKey = z
  .string({ error: 'expected a public key line (string)' })
  .max(64, { error: 'expected ed25519:<43 base64url characters>', abort: true })
  .regex(CLUSTER_PUBLIC_KEY_PATTERN, { error: 'expected ed25519:<43 base64url characters>' })
  .superRefine((k, ctx) => {
    try {
      parseClusterPublicKey(k);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message, input: k });
    }
  });

export const trustedClusterSchema = z.strictObject({
  /** The cluster name its credentials carry. */
  name: name(DNS_LABEL_PATTERN, 63, 'a cluster name'),
  /** What `peertunnel cluster-key` printed. */
  publicKey,
});

const lists = {
  /** Clusters whose credentials this node accepts; a name may appear twice while its key rotates. */
  clusters: z
    .array(trustedClusterSchema, { error: 'expected a list of {name, publicKey}' })
    .max(LIMITS.trustedClusters, { error: `expected at most ${LIMITS.trustedClusters} clusters` })
    .default([]),
  /** Peers trusted without a credential: they may serve any name and reach any expose without allowFrom. */
  allowPeers: z
    .array(peerId, { error: 'expected a list of peer IDs' })
    .max(LIMITS.allowPeers, { error: `expected at most ${LIMITS.allowPeers} peers` })
    .default([]),
};

/** A trust file: the lists that change while the node runs (re-read when the file changes). */
export const trustFileSchema = z.strictObject(lists);
export type TrustLists = z.output<typeof trustFileSchema>;

/** Where a sidecar asks for its credential: the operator's `POST /credential` (contracts/credential-request.ts). */
export const issuerSchema = z.strictObject({
  /** https://<service>.<namespace>.svc:443/credential */
  url: z
    .string({ error: 'expected an https URL (string)' })
    .max(2048, { error: 'expected a URL of at most 2048 characters', abort: true })
    .refine((u) => URL.canParse(u) && u.startsWith('https://'), { error: 'expected an https URL' }),
  /** The projected ServiceAccount token file (audience `peertunnel`), re-read for every request. */
  tokenFile: filePath,
  /** PEM of the CA that signed the operator's serving certificate; absent: the system's CAs. */
  ca: z
    .string({ error: 'expected PEM text (string)' })
    .max(16_384, { error: 'expected PEM text of at most 16384 characters', abort: true })
    .refine((t) => t.includes('-----BEGIN CERTIFICATE-----'), { error: 'expected a PEM certificate' })
    .optional(),
  /**
   * How often (seconds, jittered) the node asks the issuer for its network's trusted clusters
   * (contracts/trust-sync.ts); the answer replaces the inline `clusters`.
   */
  trustPollSeconds: z
    .number({ error: 'expected a number of seconds' })
    .int({ error: 'expected whole seconds' })
    .min(TRUST_POLL_SECONDS.min, { error: `expected at least ${TRUST_POLL_SECONDS.min} second` })
    .max(TRUST_POLL_SECONDS.max, { error: `expected at most ${TRUST_POLL_SECONDS.max} seconds` })
    .default(TRUST_POLL_SECONDS.default),
});
export type IssuerConfig = z.output<typeof issuerSchema>;

export const trustSchema = z.strictObject({
  /** The network name credentials must carry. */
  network: name(NETWORK_NAME_PATTERN, 253, 'a network name'),
  /**
   * This node's own credential (`peertunnel credential issue`), re-read and re-sent when it
   * changes. With an `issuer`, the node fetches it (and renews it) from its cluster's operator.
   */
  credential: z.strictObject({ file: filePath, issuer: issuerSchema.optional() }).optional(),
  ...lists,
  /** A YAML or JSON file with more `clusters` and `allowPeers`, re-read when it changes. */
  file: filePath.optional(),
  /** Names any member may serve and reach without a credential (interop with kubo's `ipfs p2p`). */
  uncredentialed: z
    .array(name(SERVICE_NAME_PATTERN, 63, 'a service name'), { error: 'expected a list of service names' })
    .max(LIMITS.uncredentialed, { error: `expected at most ${LIMITS.uncredentialed} names` })
    .default([]),
});
export type TrustConfig = z.output<typeof trustSchema>;

/** One `allowFrom` rule of an expose; absent fields mean "*". */
export const allowFromSchema = z
  .array(
    z.strictObject({
      cluster: nameOrAny(DNS_LABEL_PATTERN, 63, 'a cluster name'),
      namespace: nameOrAny(DNS_LABEL_PATTERN, 63, 'a namespace'),
      serviceAccount: nameOrAny(DNS_SUBDOMAIN_PATTERN, 253, 'a ServiceAccount name'),
    }),
    { error: 'expected a list of {cluster, namespace, serviceAccount}' },
  )
  .max(LIMITS.allowFrom, { error: `expected at most ${LIMITS.allowFrom} rules` });

/**
 * Reads and checks a trust file; throws ConfigError naming the file and the field in one line.
 * Returns the lists and the text they were read from.
 */
export async function loadTrustFile(file: string): Promise<TrustLists & { text: string }> {
  let text: string;
  try {
    const size = (await stat(file)).size;
    if (size > MAX_TRUST_FILE_BYTES)
      throw new ConfigError(
        'trust.file',
        `${file} is ${size} bytes, more than the ${MAX_TRUST_FILE_BYTES} accepted`,
      );
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(
      'trust.file',
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  return { ...(await parseTrustFileText(text, file)), text };
}

export async function parseTrustFileText(text: string, file: string): Promise<TrustLists> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    try {
      const { parse } = await import('yaml');
      raw = parse(text);
    } catch (err) {
      const line = err instanceof Error ? (err.message.split('\n')[0] ?? '') : String(err);
      throw new ConfigError('trust.file', `${file} is not valid YAML or JSON: ${line}`);
    }
  }
  const result = trustFileSchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  throw configErrorOf(result.error, raw, `trust.file ${file}: `);
}
