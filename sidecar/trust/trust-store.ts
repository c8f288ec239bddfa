/**
 * The trust a node holds now: its trusted clusters' keys, the peers it trusts without a
 * credential, the names uncredentialed peers may use. The inline lists of the config and those of
 * the trust file (re-read when it changes) together; the inline clusters are replaced by the
 * issuer's answer when the node asks its operator (trust-sync.ts). Every change bumps
 * `generation`, which tells the peer credential cache to check its signatures again.
 */
import type { KeyObject } from 'node:crypto';
import { parseClusterPublicKey } from '../../contracts/cluster-key.js';
import { LIMITS } from '../../contracts/limits.js';
import type { TrustedCluster } from '../../contracts/trust-sync.js';
import {
  loadTrustFile,
  MAX_TRUST_FILE_BYTES,
  parseTrustFileText,
  type TrustConfig,
  type TrustLists,
} from '../config/trust-config.js';
import type { Logger } from '../node/logger.js';
import { FilePoll } from './file-poll.js';

/** How often the trust file and the credential file are looked at. */
export const TRUST_POLL_MS = 1_000;

export class TrustStore {
  readonly network: string;
  readonly uncredentialed: ReadonlySet<string>;
  private keys = new Map<string, KeyObject[]>();
  private peers = new Set<string>();
  private clusterNames: string[] = [];
  private poll?: FilePoll;
  /** The inline clusters: the config's, until the issuer answers with its own. */
  private inline: readonly TrustedCluster[];
  private fromFile: TrustLists = { clusters: [], allowPeers: [] };
  /** What the clusters were built from, to tell an answer that changes nothing. */
  private listed = '';
  generation = 0;

  private constructor(
    private readonly config: TrustConfig,
    private readonly logger: Logger,
  ) {
    this.network = config.network;
    this.uncredentialed = new Set(config.uncredentialed);
    this.inline = config.clusters;
  }

  /** Reads the trust file (a bad one stops the start with a ConfigError) and starts watching it. */
  static async load(config: TrustConfig, logger: Logger, pollMs = TRUST_POLL_MS): Promise<TrustStore> {
    const store = new TrustStore(config, logger);
    const file = config.file;
    let fromFile: TrustLists & { text?: string } = { clusters: [], allowPeers: [] };
    if (file !== undefined) fromFile = await loadTrustFile(file);
    store.apply(fromFile, 'start', 'config');
    if (file !== undefined) {
      store.poll = new FilePoll({
        file,
        intervalMs: pollMs,
        maxBytes: MAX_TRUST_FILE_BYTES,
        onChange: async (text) => {
          try {
            store.apply(await parseTrustFileText(text, file), 'reload', 'file');
          } catch (err) {
            store.reloadFailed((err as Error).message);
          }
        },
        onError: (problem) => store.reloadFailed(problem),
      });
      store.poll.start(fromFile.text);
    }
    return store;
  }

  stop(): void {
    this.poll?.stop();
  }

  keysOf(cluster: string): readonly KeyObject[] {
    return this.keys.get(cluster) ?? [];
  }

  allowsPeer(peer: string): boolean {
    return this.peers.has(peer);
  }

  get trustedClusters(): string[] {
    return this.clusterNames;
  }

  /**
   * The issuer's list (checked against contracts/trust-sync.ts) in place of the inline clusters,
   * applied as a changed trust file is; false when it is the list already held.
   */
  applyIssued(clusters: readonly TrustedCluster[]): boolean {
    const before = this.listed;
    const inline = this.inline;
    this.inline = clusters;
    if (this.listOf(this.fromFile) === before) return false;
    try {
      this.apply(this.fromFile, 'reload', 'issuer');
    } catch (err) {
      this.inline = inline;
      throw err;
    }
    return true;
  }

  private listOf(fromFile: TrustLists): string {
    return JSON.stringify([this.inline, fromFile.clusters, fromFile.allowPeers]);
  }

  private apply(fromFile: TrustLists, why: 'start' | 'reload', source: 'config' | 'file' | 'issuer'): void {
    const clusters = [...this.inline, ...fromFile.clusters].slice(0, LIMITS.trustedClusters * 2);
    const keys = new Map<string, KeyObject[]>();
    for (const c of clusters) {
      const list = keys.get(c.name) ?? [];
      list.push(parseClusterPublicKey(c.publicKey));
      keys.set(c.name, list);
    }
    this.keys = keys;
    this.fromFile = fromFile;
    this.listed = this.listOf(fromFile);
    this.peers = new Set([...this.config.allowPeers, ...fromFile.allowPeers]);
    this.clusterNames = [...keys.keys()].sort();
    this.generation++;
    this.logger.info(
      {
        event: why === 'start' ? 'trust_loaded' : 'trust_reloaded',
        source,
        network: this.network,
        clusters: this.clusterNames,
        allowPeers: this.peers.size,
        uncredentialed: [...this.uncredentialed],
      },
      why === 'start' ? 'credentialed network: trusted clusters loaded' : 'trusted clusters changed',
    );
  }

  private reloadFailed(problem: string): void {
    this.logger.warn(
      { event: 'trust_reload_failed', file: this.config.file, problem },
      'trust file not applied: the trust before it stays',
    );
  }
}
