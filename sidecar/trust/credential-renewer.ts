/**
 * Fetches this node's credential from its cluster's operator and renews it before it expires
 * (contracts/credential-request.ts): at start, then at half of each credential's lifetime; after
 * a failure again with a bounded backoff. Each credential is written to the credential file
 * (replaced whole, by rename) and handed to `onWritten`, so the node takes it at once. Plain
 * node:https with the operator's CA: no Kubernetes client.
 */
import { rename, writeFile } from 'node:fs/promises';
import type { PrivateKey } from '@libp2p/interface';
import { decodeCredential, MAX_CREDENTIAL_BYTES } from '../../contracts/credential.js';
import { proofMessage } from '../../contracts/credential-request.js';
import type { IssuerConfig } from '../config/trust-config.js';
import type { Logger } from '../node/logger.js';
import { IssuerError, postToIssuer } from './issuer-http.js';

export interface CredentialRenewerInit {
  issuer: IssuerConfig;
  /** The credential file the node reads. */
  file: string;
  privateKey: PrivateKey;
  peer: string;
  logger: Logger;
  readToken(file: string): Promise<string>;
  /** A new credential is in the file. */
  onWritten(): Promise<void> | void;
  /** Backoff after a failure: from this, doubling, up to maxRetryMs. */
  minRetryMs?: number;
  maxRetryMs?: number;
}

/** The soonest a renewal is scheduled after the last one, whatever the lifetime says. */
const MIN_RENEW_MS = 1_000;

export class CredentialRenewer {
  private timer?: NodeJS.Timeout;
  private failures = 0;
  private stopped = false;

  constructor(private readonly init: CredentialRenewerInit) {}

  start(): void {
    this.schedule(0);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.renew(), ms);
    this.timer.unref();
  }

  /** One request; schedules the next. */
  private async renew(): Promise<void> {
    const { logger } = this.init;
    try {
      const text = await this.fetchOnce();
      const cred = decodeCredential(text);
      const tmp = `${this.init.file}.tmp`;
      await writeFile(tmp, `${cred.text}\n`, { mode: 0o600 });
      await rename(tmp, this.init.file);
      this.failures = 0;
      const { notBefore, expires } = cred.claims;
      const renewAt = (notBefore + (expires - notBefore) / 2) * 1000;
      logger.info(
        {
          event: 'credential_fetched',
          expires: new Date(expires * 1000).toISOString(),
          renewAt: new Date(renewAt).toISOString(),
          expose: cred.claims.expose,
        },
        'credential received from the operator',
      );
      await this.init.onWritten();
      this.schedule(Math.max(MIN_RENEW_MS, renewAt - Date.now()));
    } catch (err) {
      this.failures += 1;
      const min = this.init.minRetryMs ?? 1_000;
      const retryMs = Math.min(this.init.maxRetryMs ?? 30_000, min * 2 ** Math.min(this.failures - 1, 10));
      logger.warn(
        {
          event: 'credential_fetch_failed',
          reason: err instanceof IssuerError ? err.reason : 'error',
          err: err instanceof Error ? err.message : String(err),
          retryMs,
        },
        'no credential from the operator: retrying',
      );
      this.schedule(retryMs);
    }
  }

  private async fetchOnce(): Promise<string> {
    const { issuer, privateKey, peer } = this.init;
    const token = (await this.init.readToken(issuer.tokenFile)).trim();
    const at = Math.floor(Date.now() / 1000);
    const proof = Buffer.from(await privateKey.sign(proofMessage(peer, token, at))).toString('base64url');
    const body = JSON.stringify({ v: 1, token, peer, at, proof });
    const text = await postToIssuer(issuer, issuer.url, body, MAX_CREDENTIAL_BYTES * 2);
    const r = JSON.parse(text) as { credential?: unknown };
    if (typeof r.credential !== 'string') throw new IssuerError('bad_answer', 'no credential in the answer');
    return r.credential;
  }
}
