/**
 * Keeps an operator-managed node's trusted clusters as its PeerNetwork has them now
 * (contracts/trust-sync.ts): every few seconds (jittered), independent of credential renewal, it
 * POSTs its credential and a fresh proof of its peer key to the issuer's `TRUST_PATH` and hands
 * the checked answer to `apply`, which takes it as a changed trust file is taken. While the
 * operator cannot be asked, or answers something this version does not accept, the node keeps
 * the list it has (fail static, never an empty one): counted
 * (`peertunnel_trust_sync_failures_total{reason}`) and logged (`trust_sync_failed`, once per
 * distinct problem; `trust_sync_recovered` when an answer comes again).
 */
import type { PrivateKey } from '@libp2p/interface';
import { ContractError } from '../../contracts/errors.js';
import {
  MAX_TRUST_ANSWER_BYTES,
  parseTrustAnswer,
  TRUST_PATH,
  TRUST_POLL_JITTER,
  type TrustedCluster,
  trustProofMessage,
} from '../../contracts/trust-sync.js';
import type { SidecarMetrics } from '../admin/metrics.js';
import type { IssuerConfig } from '../config/trust-config.js';
import type { Logger } from '../node/logger.js';
import { IssuerError, postToIssuer } from './issuer-http.js';

/** Why an ask failed: the metric's `reason` label. */
export type TrustSyncFailure = 'unreachable' | 'refused' | 'bad_answer';

export interface TrustSyncInit {
  issuer: Pick<IssuerConfig, 'url' | 'ca' | 'trustPollSeconds'>;
  /** The network this node belongs to: an answer for another one is refused. */
  network: string;
  privateKey: PrivateKey;
  peer: string;
  /** The node's credential now; nothing to ask with before the first one arrives. */
  credential(): string | undefined;
  /** Takes a checked list (as a changed trust file is taken); throws when it cannot. */
  apply(clusters: TrustedCluster[]): void;
  metrics: SidecarMetrics;
  logger: Logger;
  /** The POST; tests replace it. */
  post?: (url: string, body: string) => Promise<string>;
  random?: () => number;
}

/** The trust endpoint beside the credential one, on the same server. */
export function trustUrl(issuerUrl: string): string {
  return new URL(TRUST_PATH, issuerUrl).toString();
}

export class TrustSync {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** The problem last logged; undefined while answers come. */
  private problem?: string;
  private readonly url: string;

  constructor(private readonly init: TrustSyncInit) {
    this.url = trustUrl(init.issuer.url);
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** The next wait: the interval, ±TRUST_POLL_JITTER, so a fleet restarted together spreads out. */
  nextDelayMs(): number {
    const r = this.init.random?.() ?? Math.random();
    return Math.round(
      this.init.issuer.trustPollSeconds * 1000 * (1 - TRUST_POLL_JITTER + 2 * TRUST_POLL_JITTER * r),
    );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.syncNow().finally(() => this.schedule()), this.nextDelayMs());
    this.timer.unref();
  }

  /** One ask; never throws. */
  async syncNow(): Promise<void> {
    const credential = this.init.credential();
    if (credential === undefined) return;
    let text: string;
    try {
      text = await this.ask(credential);
    } catch (err) {
      if (err instanceof IssuerError) return this.failed('refused', `${err.reason}: ${err.message}`);
      return this.failed('unreachable', err instanceof Error ? err.message : String(err));
    }
    let clusters: TrustedCluster[];
    try {
      const answer = parseTrustAnswer(text);
      if (answer.network !== this.init.network)
        throw new ContractError('network', `expected ${this.init.network}, got ${answer.network}`);
      clusters = answer.clusters;
    } catch (err) {
      return this.failed('bad_answer', err instanceof Error ? err.message : String(err));
    }
    try {
      this.init.apply(clusters);
    } catch (err) {
      return this.failed('bad_answer', err instanceof Error ? err.message : String(err));
    }
    if (this.problem !== undefined) {
      this.problem = undefined;
      this.init.logger.info(
        { event: 'trust_sync_recovered', clusters: clusters.map((c) => c.name) },
        'trusted clusters from the operator again',
      );
    }
  }

  private async ask(credential: string): Promise<string> {
    const { peer, privateKey } = this.init;
    const at = Math.floor(Date.now() / 1000);
    const proof = Buffer.from(await privateKey.sign(trustProofMessage(peer, at))).toString('base64url');
    const body = JSON.stringify({ v: 1, credential, at, proof });
    return this.init.post !== undefined
      ? this.init.post(this.url, body)
      : postToIssuer(this.init.issuer, this.url, body, MAX_TRUST_ANSWER_BYTES);
  }

  private failed(reason: TrustSyncFailure, problem: string): void {
    this.init.metrics.trustSyncFailures.inc({ reason });
    const line = `${reason}: ${problem.split('\n')[0] ?? ''}`;
    if (line === this.problem) return;
    this.problem = line;
    this.init.logger.warn(
      { event: 'trust_sync_failed', reason, problem: line },
      'trusted clusters not updated from the operator: the last list stays',
    );
  }
}
